"""MAC's summed per-axis NLL (alignment.losses.axis_sum_nll); the hand value is its docstring
example (run by tests/test_registries.py's doctest check)."""

from __future__ import annotations

import pytest
import torch

from alignment.losses import axis_sum_nll, sft_loss


def test_by_hand_and_metrics():
    logps = torch.tensor([-4.0, -2.0, -3.0, -10.0])
    out = axis_sum_nll(logps, torch.tensor([2, 2, 3, 5]), torch.tensor([0, 0, 1, 2]))
    torch.testing.assert_close(out.loss, torch.tensor(4.5))
    assert float(out.metrics["nll/helpfulness"]) == 1.5 and float(out.metrics["nll/honesty"]) == 2
    # window totals replace the per-axis sums: (6/2 + 3/1 + 10/5) = 8
    totals = axis_sum_nll(
        logps, torch.tensor([2, 2, 3, 5]), torch.tensor([0, 0, 1, 2]), torch.tensor([2, 1, 5])
    )
    torch.testing.assert_close(totals.loss, torch.tensor(8.0))


def test_gradient_equals_three_sequential_backward_passes():
    g = torch.Generator().manual_seed(0)
    logps = (-torch.rand(9, generator=g) * 20).requires_grad_()
    tokens = torch.randint(1, 9, (9,), generator=g)
    axis = torch.tensor([0, 1, 2] * 3)
    axis_sum_nll(logps, tokens, axis).loss.backward()
    fused = logps.grad.clone()
    logps.grad = None
    for a in range(3):  # the reference: one backward per axis batch, gradients accumulate
        rows = axis == a
        sft_loss(logps[rows], tokens[rows]).loss.backward()
    torch.testing.assert_close(fused, logps.grad)


def test_a_missing_axis_is_an_error_not_a_dropped_term():
    with pytest.raises(ValueError, match=r"axes \['honesty'\]"):
        axis_sum_nll(torch.tensor([-1.0, -1.0]), torch.tensor([1, 1]), torch.tensor([0, 1]))
