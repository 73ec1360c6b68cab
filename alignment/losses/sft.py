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


def axis_sum_nll(
    policy_logps: torch.Tensor,
    n_tokens: torch.Tensor,
    axis: torch.Tensor,
    axis_names: tuple[str, ...],
) -> LossOutput:
    """MAC's objective: the sum over axes of each axis batch's token-mean NLL,

        L = sum_a [ -sum_{b: axis_b = a} log pi(y_b | x_b) / sum_{b: axis_b = a} |y_b| ]

    which has the gradient of the reference's three sequential backward passes (one batch per
    axis, losses summed). Shapes: policy_logps, n_tokens, axis (B,); axis holds indices into
    axis_names. Every axis must have a row in the batch (a missing one would silently drop its
    term). Metrics: `nll/<axis name>` per axis, `logps/chosen`.
    """
    one_hot = torch.nn.functional.one_hot(axis.long(), len(axis_names)).to(policy_logps.dtype)
    tokens = one_hot.T @ n_tokens.to(policy_logps.dtype)  # (A,)
    if bool((tokens == 0).any()):
        missing = [axis_names[a] for a in range(len(axis_names)) if tokens[a] == 0]
        raise ValueError(f"axis_sum_nll: the batch has no response token for axes {missing}")
    per_axis = -(one_hot.T @ policy_logps) / tokens  # (A,)
    metrics = {f"nll/{name}": per_axis[a].detach() for a, name in enumerate(axis_names)}
    metrics["logps/chosen"] = policy_logps.detach()
    return LossOutput(per_axis.sum(), metrics)
