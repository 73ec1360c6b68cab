"""Supervised fine-tuning loss: masked negative log-likelihood of the response tokens."""

from __future__ import annotations

import torch

from alignment.axes import AXES
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


def axis_sum_nll(
    policy_chosen_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    axis: torch.Tensor,
    axis_tokens_total: torch.Tensor | None = None,
) -> LossOutput:
    """MAC's objective (spec/mac.md section 3): the sum over the axes of each axis batch's
    token-mean NLL,

        L = sum_a [ -sum_{b: axis_b = a} log pi(y_b | x_b) / sum_{b: axis_b = a} |y_b| ]

    which has the gradient of the reference's three sequential backward passes (one batch per
    axis, losses summed). Shapes: policy_chosen_logps, chosen_tokens, axis (B,), axis holding
    indices into alignment.axes.AXES. axis_tokens_total (A,), when given, replaces the per-axis
    token sums (the trainer passes them averaged over the gradient-accumulation window, as for
    sft_loss). Every axis must have a response token (a missing axis would silently drop its
    term). Metrics: `nll/<axis>` per axis, `logps/chosen`.

    Example: (log-prob, tokens, axis) = (-4, 2, 0), (-2, 2, 0), (-3, 3, 1), (-10, 5, 2):
    6/4 + 3/3 + 10/5 = 4.5 (one token mean over all rows would be 19/12).

    >>> logps, tokens = torch.tensor([-4.0, -2.0, -3.0, -10.0]), torch.tensor([2, 2, 3, 5])
    >>> axis_sum_nll(logps, tokens, torch.tensor([0, 0, 1, 2])).loss.item()
    4.5
    """
    dtype = policy_chosen_logps.dtype
    one_hot = torch.nn.functional.one_hot(axis.long(), len(AXES)).to(dtype)  # (B, A)
    tokens = one_hot.T @ chosen_tokens.to(dtype)  # (A,)
    if bool((tokens == 0).any()):
        missing = [AXES[a] for a in range(len(AXES)) if tokens[a] == 0]
        raise ValueError(f"axis_sum_nll: the batch has no response token for axes {missing}")
    totals = tokens if axis_tokens_total is None else axis_tokens_total.to(dtype)
    per_axis = -(one_hot.T @ policy_chosen_logps) / totals.clamp(min=1)  # (A,)
    metrics = {f"nll/{name}": per_axis[a].detach() for a, name in enumerate(AXES)}
    metrics["logps/chosen"] = policy_chosen_logps.detach()
    return LossOutput(per_axis.sum(), metrics)
