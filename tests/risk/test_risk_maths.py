"""Hand-checkable cases of the preflight maths and the AlignGuard regulariser (spec section 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from alignment.risk import (
    AlignGuard,
    alignguard_terms,
    explained_variance_rank,
    forecast_collapse,
    lower_quantile,
    select_parameters,
)
from alignment.risk.curvature import coupling_from_vectors, gradient_and_hvp, overlap_ratio
from alignment.risk.subspace import subspace_from_gradients, thin_svd_subspace


def orthonormal(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))[0]


def test_overlap_in_span_is_one_and_orthogonal_is_zero():
    """delta = V c lies in span(V): ||V V^T delta|| = ||delta||, ratio 1. delta = (I - V V^T) x is
    orthogonal: V^T delta = 0, ratio 0, and the low-overlap check triggers (0 <= 0.05)."""
    V = orthonormal(12, 3)
    inside = V @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    outside = x - V @ (V.T @ x)
    assert overlap_ratio(inside, V).ratio == pytest.approx(1.0, abs=1e-12)
    assert not overlap_ratio(inside, V).low_overlap
    low = overlap_ratio(outside, V)
    assert low.ratio == pytest.approx(0.0, abs=1e-12) and low.low_overlap
    # A 45-degree mix: ||P delta|| / ||delta|| = cos 45 = 1 / sqrt(2).
    mixed = inside / inside.norm() + outside / outside.norm()
    assert overlap_ratio(mixed, V).ratio == pytest.approx(2**-0.5, abs=1e-12)


class Quadratic(nn.Module):
    """L(theta) = 1/2 theta^T H theta + b^T theta: gradient H theta + b, Hessian H."""

    def __init__(self, H: torch.Tensor, b: torch.Tensor, theta: torch.Tensor) -> None:
        super().__init__()
        self.H, self.b, self.theta = H, b, nn.Parameter(theta.clone())

    def forward(self) -> torch.Tensor:
        return 0.5 * self.theta @ self.H @ self.theta + self.b @ self.theta


def test_hvp_on_a_quadratic_equals_H_g_and_a_finite_difference():
    g_ = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g_, dtype=torch.float64)
    H = A @ A.T + torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g_, dtype=torch.float64)
    model = Quadratic(H, b, torch.randn(6, generator=g_, dtype=torch.float64))
    sel = select_parameters(model, ["theta"])
    g, a = gradient_and_hvp(model(), sel)
    expected_g = H @ model.theta.detach() + b
    torch.testing.assert_close(g, expected_g, rtol=0, atol=1e-12)
    torch.testing.assert_close(a, H @ expected_g, rtol=0, atol=1e-10)
    # Central difference of the gradient field along g: (grad(th + h g) - grad(th - h g)) / 2h.
    h, theta = 1e-4, model.theta.detach()
    fd = ((H @ (theta + h * g) + b) - (H @ (theta - h * g) + b)) / (2 * h)
    torch.testing.assert_close(a, fd, rtol=1e-8, atol=1e-8)


def test_eps_and_gamma_by_hand():
    """V = e1, e2 in R^3, lambda = (4, 1), g = (1, 2, 5), a = (3, 0, 7):
    eps_hat = sqrt(4 * 1 + 1 * 4) = sqrt 8, gamma_hat = sqrt(4 * 9 + 0) = 6, ||P a|| = 3."""
    V = torch.eye(3, dtype=torch.float64)[:, :2]
    lam = torch.tensor([4.0, 1.0], dtype=torch.float64)
    c = coupling_from_vectors(
        torch.tensor([1.0, 2.0, 5.0]), torch.tensor([3.0, 0.0, 7.0]), lam, V
    )  # fmt: skip
    assert c.eps_hat == pytest.approx(math.sqrt(8)) and c.gamma_hat == pytest.approx(6.0)
    assert c.projected_hvp_norm == pytest.approx(3.0) and c.hvp_norm == pytest.approx(58**0.5)


def test_forecast_with_zero_eps_is_quartic_with_closed_form_collapse():
    """eps = 0: drift = gamma t^2 / 2, loss = lambda gamma^2 t^4 / 8 = quartic for every t, and the
    first t with loss >= tau is ceil((8 tau / (lambda gamma^2))^(1/4)).
    lambda = 0.5, gamma = 1e-3, tau = 0.1: (1.6 / 1e-6)^(1/4) = 35.57 -> step 36."""
    f = forecast_collapse(0.5, 1e-3, 0.0, max_steps=100, collapse_loss_threshold=0.1)
    np.testing.assert_allclose(f.estimated_loss, f.quartic_lower_bound, rtol=1e-12, atol=0)
    assert f.collapse_step == math.ceil((8 * 0.1 / (0.5 * 1e-3**2)) ** 0.25) == 36
    assert f.estimated_loss[35] < 0.1 <= f.estimated_loss[36]


def test_forecast_drift_is_clipped_at_zero_and_none_without_collapse():
    """gamma = 2, eps = 3: gamma t^2 / 2 - eps t = t^2 - 3t < 0 for t = 1, 2, so drift = 0 there;
    drift(4) = 16 - 12 = 4. With lambda = 0 nothing ever crosses the threshold."""
    f = forecast_collapse(1.0, 2.0, 3.0, max_steps=5)
    assert f.projected_drift.tolist() == [0.0, 0.0, 0.0, 0.0, 4.0, 10.0]
    assert forecast_collapse(0.0, 2.0, 3.0, max_steps=5).collapse_step is None


def test_explained_variance_rank():
    """[6, 3, 1, 1] / 11: cumulative 0.545, 0.818, 0.909 -> the first >= 0.9 is d = 3."""
    lam = torch.tensor([6.0, 3.0, 1.0, 1.0])
    assert explained_variance_rank(lam, target=0.9) == 3
    assert explained_variance_rank(lam, target=0.5) == 1
    assert explained_variance_rank(lam, top_rank=2, target=0.9) == 2  # capped at top_rank
    assert explained_variance_rank(lam, target=None) == 4


def test_lambda_min_is_the_lower_ten_percent_quantile():
    """Lower interpolation: index floor(0.1 * (n - 1)); for n <= 10 that is the smallest."""
    assert lower_quantile(torch.tensor([6.0, 3.0, 1.0, 0.5])) == 0.5
    assert lower_quantile(torch.arange(21.0, 0.0, -1.0)) == 3.0  # floor(0.1 * 20) = 2 -> 3
    assert lower_quantile(torch.empty(0)) == 0.0


def test_svd_eigenvalues_equal_the_dense_fisher():
    """lambda_j = s_j^2 / m from the thin SVD equal the eigenvalues of G^T G / m (n = 7 small)."""
    G = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lam, V, spectrum = thin_svd_subspace(G, top_rank=32, target=None)
    dense = torch.linalg.eigvalsh(G.T @ G / 5).flip(0)[:5]
    torch.testing.assert_close(lam, dense, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(V.T @ (G.T @ G / 5) @ V, torch.diag(lam), rtol=0, atol=1e-10)
    assert spectrum.shape == (5,)


def test_sensitivity_map_and_top_weights():
    """Rows (1, 2, 0) and (3, 0, 0) -> diag F = (5, 2, 0); parameter a = [0, 1], b = [2]:
    module scores a -> 3.5, b -> 0; top weights 0 then 1."""
    from alignment.risk.params import ParamSlice

    G = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    slices = [ParamSlice("m.a.weight", 0, 2, (2,)), ParamSlice("n.b.weight", 2, 3, (1,))]
    s = subspace_from_gradients(G, slices, top_weight_count=2)
    torch.testing.assert_close(s.fisher_diagonal, torch.tensor([5.0, 2.0, 0.0]))
    assert s.module_scores == {"m.a": 3.5, "n.b": 0.0}
    assert s.top_weight_indices.tolist() == [0, 1]


def test_alignguard_zero_at_anchor_and_lambda_a_gradient_in_span():
    """At theta = theta_ref every term is 0. The lambda_A term is
    lambda_A sum_j lambda_j (v_j^T Delta)^2, whose gradient 2 lambda_A V diag(lambda) V^T Delta lies
    in span(V): (I - V V^T) grad = 0. E_geo = 0 up to round-off under the orthogonal split."""
    n, d = 10, 3
    V = orthonormal(n, d).float()
    lam, diag = torch.tensor([3.0, 2.0, 0.5]), torch.rand(n) + 0.1
    theta = nn.Parameter(torch.randn(n))
    guard = AlignGuard(["m.lora_A.weight"], [theta], V, lam, diag)
    total, terms = guard()
    assert total.item() == 0.0 and all(v.item() == 0.0 for v in terms.values())
    with torch.no_grad():
        theta.add_(torch.randn(n, generator=torch.Generator().manual_seed(3)))
    _, terms = guard()
    assert terms["reg/e_geo"].item() < 1e-10 and terms["reg/e_rm"].item() > 0
    (grad,) = torch.autograd.grad(terms["reg/fisher"], theta)
    delta = (theta - guard.anchor).detach()
    torch.testing.assert_close(grad, 2 * 0.25 * V @ (lam * (V.T @ delta)), rtol=1e-5, atol=1e-6)
    assert (grad - V @ (V.T @ grad)).norm() < 1e-6 * grad.norm()
    guard.reset_anchor()
    assert guard()[0].item() == 0.0


def test_alignguard_terms_by_hand():
    """V = e1 in R^2, lambda = 2, h = (1, 1), Delta = (1, 1): Delta_A = (1, 0), Delta_T = (0, 1).
    fisher = 0.25 * 2 * 1 = 0.5; task = 0.5 * 1 = 0.5; E_RM = mean(|Delta_A * Delta_T|) = 0 (the
    parts never share a coordinate here); E_geo = 0 / (1 * 1 + eps) = 0."""
    V = torch.tensor([[1.0], [0.0]])
    t = alignguard_terms(torch.tensor([1.0, 1.0]), V, torch.tensor([2.0]), torch.ones(2))
    assert t["reg/fisher"].item() == pytest.approx(0.5) and t["reg/task"].item() == 0.5
    assert t["reg/e_rm"].item() == 0.0 and t["reg/e_geo"].item() == 0.0
    # A tilted basis puts both parts on both coordinates: V = (1, 1)/sqrt 2, Delta = (1, 0):
    # Delta_A = (0.5, 0.5), Delta_T = (0.5, -0.5), |Delta_A * Delta_T| = 0.25 each,
    # weight = 1 + 4 sigmoid(|(1, 0)| - 0.01) -> E_RM = mean(0.25 * (1 + 4 sigma(0.99)),
    # 0.25 * (1 + 4 sigma(-0.01))); reg/e_rm = 0.1 * 0.5 * E_RM.
    V = torch.tensor([[1.0], [1.0]]) / 2**0.5
    t = alignguard_terms(torch.tensor([1.0, 0.0]), V, torch.tensor([2.0]), torch.ones(2))
    sig = torch.sigmoid(torch.tensor([0.99, -0.01]))
    e_rm = (0.25 * (1 + 4 * sig)).mean().item()
    assert t["reg/e_rm"].item() == pytest.approx(0.05 * e_rm, rel=1e-6)
