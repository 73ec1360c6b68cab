"""sequence_logps against a direct log_softmax, the completion-only slicing, and token KL."""

import math

import torch

from alignment.losses import selective_log_softmax, sequence_logps, sft_loss, token_kl_full_vocab


def test_selective_log_softmax_matches_log_softmax_fp32_and_bf16():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    idx = torch.randint(0, 11, (3, 5), generator=g)
    direct = torch.log_softmax(logits, -1).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(selective_log_softmax(logits, idx), direct, atol=1e-6)
    bf = selective_log_softmax(logits.bfloat16(), idx)
    assert torch.allclose(
        bf,
        torch.log_softmax(logits.bfloat16().float(), -1).gather(-1, idx.unsqueeze(-1)).squeeze(-1),
        atol=1e-5,
    )


def test_sequence_logps_masks_prompt_and_padding_by_hand():
    # vocabulary of 2 with uniform logits: every token has log-prob log(1/2)
    logits = torch.zeros(1, 6, 2)
    labels = torch.tensor([[-100, -100, 1, 0, 1, -100]])  # 3 response tokens, 1 pad
    logps, n = sequence_logps(logits, labels)
    assert n.item() == 3
    assert abs(logps.item() - 3 * torch.log(torch.tensor(0.5)).item()) < 1e-6


def test_completion_only_logits_give_equal_logps():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 9, 7, generator=g)
    labels = torch.randint(0, 7, (2, 9), generator=g)
    labels[0, :4] = -100  # prompt of 4
    labels[1, :6] = -100  # prompt of 6
    full, n_full = sequence_logps(logits, labels)
    keep = 9 - 4 + 1  # from the shortest prompt's last position onwards
    part, n_part = sequence_logps(logits[:, -keep:], labels)
    assert torch.equal(n_full, n_part)
    assert torch.allclose(full, part, atol=1e-5)


def test_token_kl_zero_when_equal_and_nonnegative():
    g = torch.Generator().manual_seed(4)
    p = torch.randn(2, 6, 9, generator=g)
    labels = torch.randint(0, 9, (2, 6), generator=g)
    labels[:, :2] = -100
    assert abs(token_kl_full_vocab(p, p.clone(), labels).item()) < 1e-6
    for seed in range(5):
        q = torch.randn(2, 6, 9, generator=torch.Generator().manual_seed(seed))
        assert token_kl_full_vocab(p, q, labels).item() >= 0


def test_token_kl_is_kl_of_policy_from_reference_by_hand_and_torch():
    """KL(pi_theta || pi_ref), not the reverse. By hand, one response position over a
    two-token vocabulary: p = (0.5, 0.5) (equal logits), q = softmax(0, ln 3) = (0.25, 0.75):
    KL(p || q) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3) = 0.143841, while
    KL(q || p) = 0.25 ln 0.5 + 0.75 ln 1.5 = 0.130812. Position t predicts token t + 1, so
    the logits sit at position 0 and the label at position 1. Then random logits against
    torch's kl_div (an independent implementation), mean and sum."""
    policy = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])
    ref = torch.tensor([[[0.0, math.log(3.0)], [-5.0, 5.0]]])
    labels = torch.tensor([[-100, 1]])
    assert abs(token_kl_full_vocab(policy, ref, labels).item() - 0.5 * math.log(4 / 3)) < 1e-6
    g = torch.Generator().manual_seed(7)
    p, q = torch.randn(3, 8, 11, generator=g) * 2, torch.randn(3, 8, 11, generator=g) * 2
    labels = torch.randint(0, 11, (3, 8), generator=g)
    labels[:, :3] = -100
    mask = labels[:, 1:] != -100
    logp, logq = p[:, :-1].log_softmax(-1)[mask], q[:, :-1].log_softmax(-1)[mask]
    expected = torch.nn.functional.kl_div(logq, logp, log_target=True, reduction="sum")
    got_sum = token_kl_full_vocab(p, q, labels, "sum")
    assert abs(got_sum.item() - expected.item()) < 1e-4
    got_mean = token_kl_full_vocab(p, q, labels)
    assert abs(got_mean.item() - expected.item() / mask.sum().item()) < 1e-5


def test_sft_loss_is_token_mean_nll():
    # sequences with summed log-probs -2 (2 tokens) and -6 (3 tokens): L = 8 / 5
    out = sft_loss(torch.tensor([-2.0, -6.0]), torch.tensor([2, 3]))
    assert abs(out.loss.item() - 1.6) < 1e-6
