"""Hand-derived values and properties of the DPO, Factual-DPO++ and CITA losses.

DPO, by hand: policy (chosen, rejected) = (-1, -3), reference (-2, -2), beta = 0.5:
  margin = ((-1) - (-2)) - ((-3) - (-2)) = 1 - (-1) = 2;  z = 0.5 * 2 = 1
  loss = -log sigma(1) = log(1 + e^-1) = 0.3132617
Factual-DPO, zero log-ratios, beta = 0.1, delta = 10, (h_w, h_l) = (0, 1):
  z = 0.1 * (0 - 10 * 1) = -1;  loss = softplus(1) = 1.3132617
"""

import math

import torch

from alignment.losses import cita_loss, dpo_loss, factual_dpo_loss, seq_kl

T = torch.tensor


def test_dpo_hand_value():
    out = dpo_loss(T([-1.0]), T([-3.0]), T([-2.0]), T([-2.0]), beta=0.5)
    assert abs(out.loss.item() - math.log1p(math.exp(-1))) < 1e-6
    assert out.metrics["rewards/accuracy"].item() == 1.0
    assert abs(out.metrics["rewards/margins"].item() - 1.0) < 1e-6


def test_dpo_swapped_pair_and_gradient_sign():
    pc, pr = T([-1.0], requires_grad=True), T([-3.0], requires_grad=True)
    out = dpo_loss(pc, pr, T([-2.0]), T([-2.0]), beta=0.5)
    out.loss.backward()
    # dL/d pc = -beta * sigma(-z) = -0.5 * sigma(-1)
    assert abs(pc.grad.item() + 0.5 * torch.sigmoid(T(-1.0)).item()) < 1e-6
    assert pr.grad.item() > 0
    swapped = dpo_loss(T([-3.0]), T([-1.0]), T([-2.0]), T([-2.0]), beta=0.5)
    assert abs(swapped.loss.item() - math.log1p(math.exp(1))) < 1e-6


def test_dpo_label_smoothing_hand_value():
    """Conservative DPO at z = 1 (the hand example above), eps = 0.1:
    L = -(0.9) log sigma(1) - 0.1 log sigma(-1) = 0.9 * 0.3132617 + 0.1 * 1.3132617 = 0.4132617."""
    out = dpo_loss(T([-1.0]), T([-3.0]), T([-2.0]), T([-2.0]), beta=0.5, label_smoothing=0.1)
    assert abs(out.loss.item() - 0.4132617) < 1e-6


def test_dpo_reference_free_ignores_the_reference():
    """reference_free takes pi_ref log-probs as 0, even when some are passed: policy (-1, -3),
    beta 0.5: z = 0.5 * (-1 + 3) = 1, L = 0.3132617; against references (0, -5) the same pair
    would give z = 0.5 * ((-1 - 0) - (-3 + 5)) = -1.5, L = softplus(1.5) = 1.7014132."""
    pc, pr, rc, rr = T([-1.0]), T([-3.0]), T([0.0]), T([-5.0])
    free = dpo_loss(pc, pr, rc, rr, beta=0.5, reference_free=True)
    assert abs(free.loss.item() - math.log1p(math.exp(-1))) < 1e-6
    none_given = dpo_loss(pc, pr, beta=0.5, reference_free=True)  # what the trainer passes
    assert abs(none_given.loss.item() - free.loss.item()) < 1e-7
    assert abs(dpo_loss(pc, pr, rc, rr, beta=0.5).loss.item() - 1.7014132) < 1e-6


def test_factual_dpo_hand_value():
    z = torch.zeros(1)
    out = factual_dpo_loss(z, z, z, z, T([0.0]), T([1.0]), beta=0.1, delta=10.0)
    assert abs(out.loss.item() - 1.31326) < 1e-5


def test_factual_dpo_delta_zero_is_dpo_and_equal_flags_ignore_delta():
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (-torch.rand(6, generator=g) * 10 for _ in range(4))
    hw = T([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    hl = T([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    dpo = dpo_loss(pc, pr, rc, rr, beta=0.1).loss
    assert abs(factual_dpo_loss(pc, pr, rc, rr, hw, hl, beta=0.1, delta=0.0).loss - dpo) < 1e-7
    same = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    losses = [
        factual_dpo_loss(pc, pr, rc, rr, same, same, beta=0.1, delta=d).loss for d in (0, 5, 50)
    ]
    assert max(losses) - min(losses) < 1e-7


def test_factual_dpo_rises_with_delta_for_0_1_pairs():
    z = torch.zeros(3)
    hw, hl = torch.zeros(3), torch.ones(3)
    vals = [
        factual_dpo_loss(z, z, z, z, hw, hl, beta=0.1, delta=d).loss.item() for d in (0, 2, 10, 100)
    ]
    assert all(a < b for a, b in zip(vals, vals[1:], strict=False))


def test_factual_dpo_safedpo_reading():
    z = torch.zeros(1)
    inside = factual_dpo_loss(z, z, z, z, T([0.0]), T([1.0]), beta=0.1, delta=10.0)
    outside = factual_dpo_loss(
        z, z, z, z, T([0.0]), T([1.0]), beta=0.1, delta=1.0, delta_inside_beta=False
    )
    assert abs(inside.loss.item() - outside.loss.item()) < 1e-7


def test_cita_lambda0_reference_free_is_reference_free_dpo():
    g = torch.Generator().manual_seed(2)
    pc, pr, rc, rr = (-torch.rand(5, generator=g) * 10 for _ in range(4))
    n = torch.full((5,), 4)
    out = cita_loss(pc, pr, n, beta=0.1, lambda_kl=0.0, reference_free=True)
    free = dpo_loss(pc, pr, torch.zeros(5), torch.zeros(5), beta=0.1)
    assert abs(out.loss.item() - free.loss.item()) < 1e-6
    stacked = cita_loss(pc, pr, n, rc, rr, beta=0.1, lambda_kl=0.0, reference_free=False)
    assert abs(stacked.loss.item() - dpo_loss(pc, pr, rc, rr, beta=0.1).loss.item()) < 1e-6


def test_cita_stable_for_huge_margin_and_v1_cap():
    pc = T([-1e4], requires_grad=True)
    out = cita_loss(pc, T([0.0]), T([1]), beta=0.1, lambda_kl=0.0)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert abs(pc.grad.item() + 0.1) < 1e-6  # gradient ~ -beta, not saturated
    capped = cita_loss(T([-1e4]), T([0.0]), T([1]), beta=0.1, lambda_kl=0.0, log_eps=1e-10)
    assert abs(capped.loss.item() - (-math.log(1e-10))) < 1e-3


def test_cita_adds_lambda_times_each_anchor():
    """s+ = -2, s- = -4 against references -1, -3 (log-ratios -1 and -1):
    seq_logratio = 0.5 * (-1 + -1) = -1, seq_sq = 0.5 * (1 + 1) = 1; token_full_vocab = 6 / 2 = 3
    (a KL sum of 6 over 2 response tokens). With lambda_kl = 0.5 the loss moves by lambda * KL."""
    pc, pr, rc, rr, n = T([-2.0]), T([-4.0]), T([-1.0]), T([-3.0]), T([2])
    base = cita_loss(pc, pr, n, beta=0.1, lambda_kl=0.0).loss
    for estimator, kl in (("seq_logratio", -1.0), ("seq_sq", 1.0)):
        out = cita_loss(pc, pr, n, rc, rr, beta=0.1, lambda_kl=0.5, kl_estimator=estimator)
        assert abs((out.loss - base).item() - 0.5 * kl) < 1e-6, estimator
        assert abs(out.metrics["cita/kl"].item() - kl) < 1e-6
    tok = cita_loss(
        pc, pr, n, token_kl_sum=T(6.0), response_tokens_total=T(2.0),
        beta=0.1, lambda_kl=0.5, kl_estimator="token_full_vocab",
    )  # fmt: skip
    assert abs((tok.loss - base).item() - 1.5) < 1e-6


def test_cita_sft_term_is_the_token_mean_nll_over_the_window():
    """chosen log-probs (-6, -2) over (3, 1) tokens: NLL = 8 / 4 = 2; with a window normaliser
    of 8 tokens per micro-batch the same sum gives 1. lambda_sft = 0.5 adds 0.5 * NLL."""
    pc, pr, n = T([-6.0, -2.0]), T([-7.0, -3.0]), T([3, 1])
    base = cita_loss(pc, pr, n, beta=0.1, lambda_kl=0.0).loss
    out = cita_loss(pc, pr, n, beta=0.1, lambda_kl=0.0, lambda_sft=0.5)
    assert abs((out.loss - base).item() - 1.0) < 1e-6
    window = cita_loss(pc, pr, n, chosen_tokens_total=T(8.0), beta=0.1, lambda_kl=0, lambda_sft=0.5)
    assert abs((window.loss - base).item() - 0.5) < 1e-6


def test_seq_kl_estimators():
    pc, pr = T([-2.0, -3.0]), T([-5.0, -1.0])
    assert seq_kl(pc, pr, pc, pr, squared=False).item() == 0.0
    assert seq_kl(pc, pr, pc, pr, squared=True).item() == 0.0
    rc, rr = T([-1.0, -3.0]), T([-5.0, -3.0])
    # log-ratios: chosen (-1, 0), rejected (0, 2) -> 0.5 * (-0.5 + 1.0) = 0.25; squared 0.5*(0.5+2)
    assert abs(seq_kl(pc, pr, rc, rr, squared=False).item() - 0.25) < 1e-6
    assert abs(seq_kl(pc, pr, rc, rr, squared=True).item() - 1.25) < 1e-6
