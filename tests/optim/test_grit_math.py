"""Tests of GRIT's pure maths (alignment/optim/grit_math.py) against dense, hand-derived values."""

from __future__ import annotations

import pytest
import torch

from alignment.optim import grit_math as gm


def _spd(m: int, r: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, r, 3 * r, generator=gen)
    return x @ x.mT / (3 * r) + 0.1 * torch.eye(r)


def test_identity_factors_with_zero_damping_leave_gradients_unchanged():
    eye = torch.eye(4).expand(3, 4, 4)
    inv_a, inv_g, ok, scale = gm.damped_inverse_pair(eye, eye, damping=0.0)
    assert ok.all() and torch.equal(scale, torch.ones(3))
    grad_a, grad_b = torch.randn(3, 4, 7), torch.randn(3, 5, 4)
    torch.testing.assert_close(gm.precondition_left(inv_a, grad_a), grad_a)
    torch.testing.assert_close(gm.precondition_right(grad_b, inv_g), grad_b)


def test_damped_inverse_matches_dense_inverse():
    cov_a, cov_g = _spd(5, 4, 0), _spd(5, 4, 1)
    inv_a, inv_g, ok, _ = gm.damped_inverse_pair(cov_a, cov_g, damping=1e-3)
    eye = torch.eye(4)
    assert ok.all()
    torch.testing.assert_close(inv_a, torch.linalg.inv(cov_a + 1e-3 * eye), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(inv_g, torch.linalg.inv(cov_g + 1e-3 * eye), atol=1e-4, rtol=1e-4)


def test_damping_escalation_on_singular_factors_never_returns_nan():
    zeros = torch.zeros(2, 4, 4)
    inv_a, inv_g, ok, scale = gm.damped_inverse_pair(zeros, zeros, damping=1e-5)
    assert ok.all() and torch.equal(scale, torch.ones(2))  # δI alone is PD: works at scale 1
    torch.testing.assert_close(inv_a, torch.eye(4).expand(2, 4, 4) / 1e-5)
    # An indefinite factor (eigenvalue −2e-5) needs δ·c > 2e-5: c = 3 with δ = 1e-5.
    indefinite = torch.diag(torch.tensor([1.0, 1.0, 1.0, -2e-5]))[None]
    _, _, ok, scale = gm.damped_inverse_pair(indefinite, torch.eye(4)[None], damping=1e-5)
    assert ok.item() and scale.item() == 3.0
    # Non-finite statistics fail every scale: identity returned, no NaN, ok False.
    bad = torch.full((1, 4, 4), float("nan"))
    inv_a, inv_g, ok, scale = gm.damped_inverse_pair(bad, torch.eye(4)[None], damping=1e-5)
    assert not ok.item() and torch.isnan(scale).item()
    assert torch.equal(inv_a[0], torch.eye(4)) and torch.isfinite(inv_g).all()


def test_kfac_exact_right_factor_equals_dense_kronecker_natural_gradient():
    """gB U⁻¹ is the natural gradient of vec(B) under the dense Fisher U ⊗ I (row-major vec)."""
    d_out, r = 3, 4
    u_cov = _spd(1, r, 2)[0]
    grad_b = torch.randn(d_out, r, dtype=torch.float64)
    dense_fisher = torch.kron(torch.eye(d_out, dtype=torch.float64), u_cov.double())
    dense = torch.linalg.solve(dense_fisher, grad_b.reshape(-1)).reshape(d_out, r)
    inv_u = torch.linalg.inv(u_cov)[None]
    torch.testing.assert_close(
        gm.precondition_right(grad_b.float()[None], inv_u)[0].double(), dense
    )


def test_update_factor_cumulative_is_the_token_weighted_mean_over_batches():
    z1, z2 = torch.randn(6, 3), torch.randn(10, 3)
    cov, count = torch.zeros(3, 3), torch.zeros((), dtype=torch.float64)
    for z in (z1, z2):
        cov, count = gm.update_factor(cov, count, *gm.rank_space_moment(z, None), "cumulative", 0.9)
    both = torch.cat([z1, z2])
    torch.testing.assert_close(cov, both.T @ both / 16)
    assert count.item() == 16


def test_update_factor_ema_and_masked_empty_batch():
    z1, z2 = torch.randn(6, 3), torch.randn(4, 3)
    cov, count = torch.zeros(3, 3), torch.zeros((), dtype=torch.float64)
    cov, count = gm.update_factor(cov, count, *gm.rank_space_moment(z1, None), "ema", 0.9)
    torch.testing.assert_close(cov, z1.T @ z1 / 6)  # seeded by the first batch
    cov2, _ = gm.update_factor(cov, count, *gm.rank_space_moment(z2, None), "ema", 0.9)
    torch.testing.assert_close(cov2, 0.9 * cov + 0.1 * z2.T @ z2 / 4)
    empty = gm.rank_space_moment(z2, torch.zeros(4))
    for mode in ("ema", "cumulative"):
        cov3, count3 = gm.update_factor(cov, count, *empty, mode, 0.9)
        assert torch.equal(cov3, cov) and count3.item() == 6


def test_masked_moment_counts_only_masked_rows():
    z, mask = torch.randn(5, 2), torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    total, count = gm.rank_space_moment(z, mask)
    kept = z[mask.bool()]
    torch.testing.assert_close(total, kept.T @ kept)
    assert count.item() == 3


def test_tau_rule_on_a_known_spectrum_then_min_rank_clamp():
    evals = torch.tensor([[0.9, 0.05, 0.03, 0.02]])
    assert gm.tau_rank(evals, tau=0.99, min_rank=1).item() == 4
    assert gm.tau_rank(evals, tau=0.96, min_rank=1).item() == 3  # 0.9, 0.95 < 0.96
    assert gm.tau_rank(evals, tau=0.5, min_rank=1).item() == 1  # the top direction suffices
    concentrated = torch.tensor([[0.995, 0.003, 0.001, 0.001]])
    assert gm.tau_rank(concentrated, tau=0.99, min_rank=1).item() == 1
    assert gm.tau_rank(concentrated, tau=0.99, min_rank=2).item() == 2  # clamped up
    assert gm.tau_rank(concentrated, tau=0.99, min_rank=9).item() == 4  # never above r
    assert gm.tau_rank(torch.zeros(1, 4), tau=0.99, min_rank=2).item() == 4  # no energy: k = r


def test_reprojection_is_idempotent_and_cuts_rank_to_k():
    evals, evecs = gm.sorted_eigh(_spd(3, 6, 3))
    assert (evals[:, :-1] >= evals[:, 1:]).all()
    k = torch.tensor([2, 3, 6])
    proj = gm.projector(evecs, k)
    a, b = torch.randn(3, 6, 11), torch.randn(3, 9, 6)
    a1, b1 = proj @ a, b @ proj
    torch.testing.assert_close(proj @ a1, a1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b1 @ proj, b1, atol=1e-5, rtol=1e-5)
    for m in range(3):
        assert torch.linalg.matrix_rank(a1[m]).item() <= k[m].item()
        assert torch.linalg.matrix_rank(b1[m]).item() <= k[m].item()
    torch.testing.assert_close(proj[2], torch.eye(6), atol=1e-5, rtol=1e-5)  # k = r: identity


def test_regularizer_gradients_are_2_sigma_a_and_2_i_minus_p_a():
    sigma = _spd(2, 4, 4)
    _, evecs = gm.sorted_eigh(sigma)
    proj = gm.projector(evecs, torch.tensor([2, 1]))
    eye = torch.eye(4)
    a = torch.randn(2, 4, 7, requires_grad=True)
    (grad_k,) = torch.autograd.grad(gm.quadratic_penalty_left(a, sigma), a)
    torch.testing.assert_close(grad_k, 2 * sigma @ a.detach())
    reproj = gm.quadratic_penalty_left(a, eye - proj)
    torch.testing.assert_close(reproj, ((eye - proj) @ a.detach()).square().sum())
    (grad_r,) = torch.autograd.grad(reproj, a)
    torch.testing.assert_close(grad_r, 2 * (eye - proj) @ a.detach(), atol=1e-5, rtol=1e-5)
    b = torch.randn(2, 5, 4, requires_grad=True)
    (grad_b,) = torch.autograd.grad(gm.quadratic_penalty_right(b, sigma), b)
    torch.testing.assert_close(grad_b, 2 * b.detach() @ sigma)
    (grad_br,) = torch.autograd.grad(gm.quadratic_penalty_right(b, eye - proj), b)
    torch.testing.assert_close(grad_br, 2 * b.detach() @ (eye - proj), atol=1e-5, rtol=1e-5)


def test_penalty_matrix_combines_both_lambdas_and_detaches_sigma():
    sigma = _spd(1, 3, 5).requires_grad_()
    proj = gm.projector(gm.sorted_eigh(sigma.detach())[1], torch.tensor([1]))
    k_mat = gm.penalty_matrix(sigma, proj, lambda_kfac=0.5, lambda_reproj=2.0)
    torch.testing.assert_close(k_mat, 0.5 * sigma.detach() + 2.0 * (torch.eye(3) - proj))
    assert not k_mat.requires_grad
    torch.testing.assert_close(gm.penalty_matrix(sigma, None, 0.5, 2.0), 0.5 * sigma.detach())


def test_effective_rank_of_flat_single_and_empty_spectra():
    evals = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(gm.effective_rank(evals), torch.tensor([4.0, 1.0, 0.0]))


def test_sanitize_zeroes_nonfinite_and_clamps():
    g = torch.tensor([float("nan"), float("inf"), -2e6, 3.0])
    assert torch.equal(gm.sanitize(g), torch.tensor([0.0, 0.0, -1e6, 3.0]))


@pytest.mark.parametrize(
    ("losses", "improving", "freq"), [(list(range(20, 0, -1)), True, 15), ([1.0] * 20, False, 7)]
)
def test_adaptive_frequency_rule(losses: list[float], improving: bool, freq: int):
    flag = gm.loss_improving(torch.tensor(losses, dtype=torch.float32))
    assert bool(flag) is improving
    assert gm.adapted_frequency(10, improving, max_freq=1000) == freq
    assert gm.adapted_frequency(1, False, max_freq=1000) == 1  # int(0.75) = 0, clamped to 1


def test_adaptive_damping_is_clipped_std_of_losses():
    flat = torch.full((12,), 3.0)
    assert gm.adaptive_damping(flat).item() == pytest.approx(1e-3)
    noisy = torch.tensor([0.0, 1.0] * 6)
    assert gm.adaptive_damping(noisy).item() == pytest.approx(1e-2)  # 1e-3 + 0.52 clipped
    small = torch.tensor([1.0, 1.002, 1.0, 1.002])
    expected = 1e-3 + small.var().sqrt().item()
    assert gm.adaptive_damping(small).item() == pytest.approx(expected)
