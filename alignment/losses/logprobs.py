"""Sequence log-probabilities: the one place token log-probs are gathered (training and evaluation).

Memory matters more than anything here: the logits tensor (B, T, V) is the largest activation of
a small-model step. These functions never materialise a full (B, T, V) log-softmax, and they
upcast to fp32 only one chunk of rows at a time.
"""

from __future__ import annotations

import torch

# Rows of the flattened (N, V) logits handled per chunk: bounds the fp32 temporaries to ~64 MB.
_CHUNK_ELEMENTS = 1 << 24


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., index] without building the full log-softmax.

    Shapes: logits (..., V), index (...) -> (...). Computed as logit[index] - logsumexp(logits)
    in fp32, chunk by chunk over rows.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    idx = index.reshape(-1)
    rows = max(1, _CHUNK_ELEMENTS // flat.shape[-1])
    if flat.shape[0] <= rows and flat.dtype == torch.float32:
        out = flat.gather(-1, idx.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(flat, dim=-1)
        return out.view(index.shape)
    parts = []
    for start in range(0, flat.shape[0], rows):
        chunk = flat[start : start + rows].float()
        picked = chunk.gather(-1, idx[start : start + rows].unsqueeze(-1)).squeeze(-1)
        parts.append(picked - torch.logsumexp(chunk, dim=-1))
    return torch.cat(parts).view(index.shape)


def shift_targets(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align logits with the tokens they predict.

    `logits` (B, K, V) belong to the LAST K input positions (K = L when the model kept them all);
    position t predicts token t + 1. Returns (logits (B, K-1, V), targets (B, K-1)).
    """
    k = logits.shape[1]
    return logits[:, :-1], labels[:, labels.shape[1] - k + 1 :]


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the labelled (response) tokens of each sequence.

    Args:
        logits: (B, K, V) for the last K positions of the input (see `shift_targets`).
        labels: (B, L) input ids with prompt and padding positions set to -100.
    Returns:
        logps (B,) summed over response tokens, and n_tokens (B,) the number of those tokens.
    """
    logits, targets = shift_targets(logits, labels)
    mask = targets != -100
    per_token = selective_log_softmax(logits, targets.clamp(min=0))
    return (per_token * mask).sum(-1), mask.sum(-1)


def token_kl_full_vocab(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Exact KL(pi_theta || pi_ref) over the vocabulary at each response position.

    KL_t = sum_v p_theta(v) (log p_theta(v) - log p_ref(v)); the result is the mean (reduction
    "mean") or the sum ("sum", for a normaliser over the gradient-accumulation window) of KL_t
    over all response positions of the batch, shape (). Chunked over rows; >= 0 up to rounding.
    """
    policy_logits, targets = shift_targets(policy_logits, labels)
    ref_logits = ref_logits[:, -policy_logits.shape[1] - 1 : -1]
    mask = (targets != -100).reshape(-1)
    p_flat = policy_logits.reshape(-1, policy_logits.shape[-1])[mask]
    r_flat = ref_logits.reshape(-1, ref_logits.shape[-1])[mask]
    if p_flat.shape[0] == 0:
        return policy_logits.new_zeros((), dtype=torch.float32)
    rows = max(1, _CHUNK_ELEMENTS // p_flat.shape[-1])
    total = p_flat.new_zeros((), dtype=torch.float32)
    for start in range(0, p_flat.shape[0], rows):
        logp = torch.log_softmax(p_flat[start : start + rows].float(), dim=-1)
        logr = torch.log_softmax(r_flat[start : start + rows].float(), dim=-1)
        total = total + (logp.exp() * (logp - logr)).sum()
    return total if reduction == "sum" else total / p_flat.shape[0]
