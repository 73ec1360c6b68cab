"""AlignX-repro router and calibrators (alignment/alignx/routing.py, latent.py).

Hand values:
- natural: z = (0, 0), centroids (0, 0), (3, 4), (0, 1): distances 0, 5, 1, so
  p_nat = (1, e^-5, e^-1) / (1 + e^-5 + e^-1) = (0.72868, 0.00491, 0.26807).
- fractal (eps = 0.5, k = 1): reference points x = 0, 0.2 (axis 0), 0.9 (axis 1), 1.0 (axis 2);
  range [0, 1], two boxes [0, 0.5), [0.5, 1]. Axis 0 has 2 points in box 0, axis 1 one in box 1,
  axis 2 one in box 1. Query 0.1 (box 0): densities (2/2, 0/1, 0/1) -> (1, 0, 0). Query 0.7
  (box 1): (0, 1, 1) -> (0, 0.5, 0.5).
- calibration, product: p = (0.5, 0.25, 0.25), p_nat = (0.2, 0.6, 0.2), p_frac = (0, 0.5, 0.5),
  lambda = 0.6/0.4: p_cal = (0.12, 0.56, 0.32); p * p_cal = (0.06, 0.14, 0.08) / 0.28
  = (0.214286, 0.5, 0.285714).
"""

from __future__ import annotations

import math

import pytest
import torch

from alignment.alignx.latent import LatentProjector, axis_centroids, mean_pool
from alignment.alignx.routing import (
    BoxCounts,
    Router,
    calibrated_weights,
    natural_probs,
    route_probs,
)


def test_router_shapes_match_the_readme():
    router = Router(hidden=32)
    assert tuple(router.w_r.weight.shape) == (3, 1024)  # W_r in R^{3 x 1024}
    assert router.w_r.bias is None
    assert router(torch.randn(5, 32)).shape == (5, 3)


def test_router_outputs_lie_on_the_simplex_and_become_one_hot_as_t_goes_to_0():
    torch.manual_seed(0)
    logits = Router(hidden=16)(torch.randn(64, 16))
    for t in (10.0, 1.0, 0.3):
        p = route_probs(logits, t)
        assert (p >= 0).all()
        torch.testing.assert_close(p.sum(-1), torch.ones(64))
    # T -> 0: one-hot on the argmax wherever the top two logits differ by >= 1e-3
    top2 = logits.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) >= 1e-3
    assert clear.sum() >= 60
    sharp = route_probs(logits[clear], 1e-5)
    one_hot = torch.nn.functional.one_hot(logits[clear].argmax(-1), 3).float()
    assert (sharp - one_hot).abs().max() < 1e-6
    # entropy falls monotonically with T
    ent = [(-(p * p.log()).sum(-1)).mean() for p in (route_probs(logits, t) for t in (4, 1, 0.25))]
    assert ent[0] > ent[1] > ent[2]
    with pytest.raises(ValueError, match="alignx.temperature"):
        route_probs(logits, 0.0)


def test_natural_probs_by_hand():
    z = torch.zeros(1, 2)
    centroids = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    e = [1.0, math.exp(-5), math.exp(-1)]
    expected = torch.tensor([v / sum(e) for v in e]).unsqueeze(0)
    torch.testing.assert_close(natural_probs(z, centroids), expected)


def test_fractal_box_counts_by_hand():
    points = torch.tensor([[0.0], [0.2], [0.9], [1.0]])
    labels = torch.tensor([0, 0, 1, 2])
    boxes = BoxCounts(k=1, n_axes=3, eps=0.5).fit(points, labels)
    p = boxes(torch.tensor([[0.1], [0.7]]))
    torch.testing.assert_close(p, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]))
    # a restored state dict gives the same answer (the buffers carry the fit)
    restored = BoxCounts(k=1, n_axes=3, eps=0.5)
    restored.load_state_dict(boxes.state_dict())
    torch.testing.assert_close(restored(torch.tensor([[0.1]])), p[:1])


def test_fractal_with_no_neighbour_is_uniform_and_per_coordinate_mean():
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    boxes = BoxCounts(k=2, n_axes=3, eps=0.5).fit(points, torch.tensor([0, 1, 2]))
    # query (0, 0): coordinate 0 in box 0 shared by axes 0 and 2; coordinate 1 in box 0 by axis
    # 0 only: mean densities (1, 0, 0.5) -> (2/3, 0, 1/3)
    p = boxes(torch.tensor([[0.0, 0.0]]))
    torch.testing.assert_close(p, torch.tensor([[2 / 3, 0.0, 1 / 3]]))
    lonely = BoxCounts(k=1, n_axes=3, eps=0.25).fit(
        torch.tensor([[0.0], [0.1], [1.0]]), torch.tensor([0, 1, 2])
    )
    torch.testing.assert_close(lonely(torch.tensor([[0.5]])), torch.full((1, 3), 1 / 3))


def test_calibration_by_hand_and_lambda1_1_is_natural_only():
    p = torch.tensor([[0.5, 0.25, 0.25]])
    nat = torch.tensor([[0.2, 0.6, 0.2]])
    frac = torch.tensor([[0.0, 0.5, 0.5]])
    w = calibrated_weights(p, nat, frac, 0.6, 0.4, "product")
    torch.testing.assert_close(w, torch.tensor([[0.06, 0.14, 0.08]]) / 0.28)
    # lambda1 = 1, lambda2 = 0: the fractal calibrator has no say
    other_frac = torch.tensor([[1.0, 0.0, 0.0]])
    for combine in ("product", "calibration"):
        a = calibrated_weights(p, nat, frac, 1.0, 0.0, combine)
        b = calibrated_weights(p, nat, other_frac, 1.0, 0.0, combine)
        assert torch.equal(a, b)
    torch.testing.assert_close(calibrated_weights(p, nat, frac, 1.0, 0.0, "calibration"), nat)
    torch.testing.assert_close(
        calibrated_weights(p, nat, frac, 1.0, 0.0, "product"), (p * nat) / (p * nat).sum()
    )
    assert torch.equal(calibrated_weights(p, nat, frac, 0.6, 0.4, "router"), p)


def test_calibrated_weights_lie_on_the_simplex():
    g = torch.Generator().manual_seed(1)
    p, nat, frac = (torch.softmax(torch.randn(32, 3, generator=g), -1) for _ in range(3))
    for combine in ("product", "calibration", "router"):
        w = calibrated_weights(p, nat, frac, 0.6, 0.4, combine)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(32))


def test_bad_calibration_settings_name_the_key():
    p = torch.full((1, 3), 1 / 3)
    with pytest.raises(ValueError, match="alignx.lambda1/lambda2"):
        calibrated_weights(p, p, p, -0.1, 0.4)
    with pytest.raises(ValueError, match="alignx.combine"):
        calibrated_weights(p, p, p, 0.6, 0.4, "sum")
    with pytest.raises(ValueError, match="alignx.eps"):
        BoxCounts(4, 3, eps=0.0)


def test_mean_pool_centroids_and_projector_shapes():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="no unmasked"):
        mean_pool(hidden, torch.zeros(1, 3))
    z = torch.tensor([[0.0, 0.0], [2.0, 2.0], [5.0, 1.0], [1.0, 1.0]])
    mu = axis_centroids(z, torch.tensor([0, 0, 1, 2]), 3)
    torch.testing.assert_close(mu, torch.tensor([[1.0, 1.0], [5.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"axes \[2\]"):
        axis_centroids(z[:3], torch.tensor([0, 0, 1]), 3)
    proj = LatentProjector(hidden=16)
    assert proj(torch.randn(4, 16)).shape == (4, 256)  # k = 256
    assert proj.axis_logits(proj(torch.randn(4, 16))).shape == (4, 3)
