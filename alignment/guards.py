"""Non-finite losses and gradients: stop the run, or skip that optimizer step (train.nan_policy).

The trainer hands `NonFiniteGuard` each micro-batch's loss and, once the accumulation window's
gradients are complete (before clipping and before the optimizer step), the trainable
parameters. One host read per optimizer step fetches the window's loss sum and gradient norm;
the Trainer's own NaN filter, which re-logged a NaN loss as the running mean (0 right after a
logging step), is turned off, so it no longer syncs on every micro-batch and a NaN is logged as
NaN.

- `stop` raises `NonFiniteError` before the optimizer step: the weights, the optimizer state
  and every checkpoint on disk stay finite, and the error names the step and the quantity.
- `skip_step` drops the window's gradients (torch optimizers skip parameters whose `.grad` is
  None: no moment update, no weight decay), counts the step, and raises once
  `max_consecutive_skips` windows in a row were non-finite. A preconditioner (GRIT) has already
  folded the window into its statistics by then, so with one the guard stops instead.
"""

from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Training met a non-finite loss or gradient norm; one line naming the step."""


class NonFiniteGuard:
    def __init__(self, policy: str = "stop", max_consecutive_skips: int = 5) -> None:
        if policy not in ("stop", "skip_step"):
            raise ValueError(f"train.nan_policy must be stop or skip_step, got {policy!r}")
        self.policy, self.max_consecutive = policy, max_consecutive_skips
        self.skipped = 0  # optimizer steps skipped so far (logged as skipped_steps)
        self.consecutive = 0
        # Set when the latest optimizer step was skipped: its true gradient norm, which the
        # Trainer (whose gradients are gone by then) would otherwise log as 0.
        self.skipped_grad_norm: float | None = None
        self._loss_sum: torch.Tensor | None = None

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Add a micro-batch's (detached) loss to the window's sum; stays on the device."""
        loss = loss.detach().float().sum()
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss

    def check_window(self, step: int, params: list[torch.nn.Parameter], has_state: bool) -> bool:
        """After the window's last backward: True when the optimizer step may proceed.

        `step` is the optimizer step about to be taken (1-based); `has_state` says a
        preconditioner has already absorbed this window (skipping cannot undo that).
        """
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        loss = self._loss_sum if self._loss_sum is not None else torch.zeros(())
        self._loss_sum = None
        loss_value, norm_value = torch.stack([loss.to(norm), norm.float()]).tolist()  # one sync
        self.skipped_grad_norm = None
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            self.consecutive = 0
            return True
        what = (
            f"loss is {loss_value}"
            if not math.isfinite(loss_value)
            else f"gradient norm is {norm_value}"
        )
        where = f"step {step}: {what}"
        if self.policy == "stop":
            raise NonFiniteError(
                f"{where}; stopped before the optimizer step (train.nan_policy=stop)"
            )
        if has_state:
            raise NonFiniteError(
                f"{where}; the optimizer's preconditioner already took in this step, so "
                "train.nan_policy=skip_step cannot drop it; stopped"
            )
        self.consecutive += 1
        if self.consecutive > self.max_consecutive:
            raise NonFiniteError(
                f"{where}; {self.consecutive} non-finite steps in a row "
                f"(train.max_consecutive_skips={self.max_consecutive}); stopped"
            )
        for p in params:
            p.grad = None
        self.skipped += 1
        self.skipped_grad_norm = norm_value
        log.warning("%s; optimizer step skipped (%d skipped so far)", where, self.skipped)
        return False

    def log_fields(self) -> dict[str, float]:
        """What the trainer adds to a log line: the skip count, and the true gradient norm of
        a skipped latest step."""
        if self.policy != "skip_step":
            return {}
        fields = {"skipped_steps": float(self.skipped)}
        if self.skipped_grad_norm is not None:
            fields["grad_norm"] = self.skipped_grad_norm
        return fields


def failure_line(err: BaseException) -> str:
    """The `failure` tag of a run that raised: the error's type and first line (MLflow tags
    hold 5000 characters; tracking redacts secrets in them)."""
    lines = str(err).strip().splitlines() or [""]
    return f"{type(err).__name__}: {lines[0]}"[:1000]
