"""Supervised fine-tuning loss: masked negative log-likelihood of the response tokens."""

from __future__ import annotations

import torch

from alignment.losses.types import LossOutput


def sft_loss(
    policy_chosen_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    chosen_tokens_total: torch.Tensor | None = None,
) -> LossOutput:
    """Token-mean NLL: L = -sum_b log pi_theta(y_b | x_b) / sum_b |y_b| (Ouyang et al. 2022).

    Shapes: policy_chosen_logps (B,) summed response log-probs; chosen_tokens (B,) response
    token counts. Each token weighs the same, so long responses count more than short ones (as in
    TRL's SFT). chosen_tokens_total (), when given, replaces sum_b |y_b|: the trainer passes the
    response tokens per micro-batch averaged over the gradient-accumulation window, so that 8
    micro-batches of 1 give exactly the gradient of one batch of 8 (a per-micro-batch token mean
    would weigh the tokens of short micro-batches more).

    Example: log-probs -6 and -2 over 3 and 1 tokens: L = 8 / 4 = 2.

    >>> round(sft_loss(torch.tensor([-6.0, -2.0]), torch.tensor([3, 1])).loss.item(), 4)
    2.0
    """
    total = chosen_tokens.sum() if chosen_tokens_total is None else chosen_tokens_total
    loss = -policy_chosen_logps.sum() / total.clamp(min=1)
    per_token = (policy_chosen_logps / chosen_tokens.clamp(min=1)).detach()
    return LossOutput(
        loss, {"logps/chosen": policy_chosen_logps.detach(), "sft/token_logp": per_token}
    )
