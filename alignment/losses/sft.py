"""Supervised fine-tuning loss: masked negative log-likelihood of the response tokens."""

from __future__ import annotations

import torch

from alignment.losses.types import LossOutput


def sft_loss(policy_logps: torch.Tensor, n_tokens: torch.Tensor) -> LossOutput:
    """Token-mean NLL over the batch: L = -sum_b log pi_theta(y_b | x_b) / sum_b |y_b|.

    Shapes: policy_logps (B,) summed response log-probs; n_tokens (B,) response token counts.
    Each token weighs the same, so long responses count more than short ones (as in TRL's SFT).
    """
    total = n_tokens.sum().clamp(min=1)
    loss = -policy_logps.sum() / total
    per_token = (policy_logps / n_tokens.clamp(min=1)).detach()
    return LossOutput(loss, {"logps/chosen": policy_logps.detach(), "sft/token_logp": per_token})
