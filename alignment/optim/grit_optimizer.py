"""The thin optimizer wrapper that puts GRIT between backward and the base optimizer's step.

`GritOptimizer.step()` clips the gradients and preconditions them (in `grad_clip_order`), steps
the inner optimizer, then advances GRIT's schedule (inversion, reprojection). It owns gradient
clipping, so the trainer must not clip as well: Hugging Face's Trainer clips before calling
`optimizer.step()`, which would fix the order to clip_then_precondition.

It subclasses `torch.optim.Optimizer` only so that isinstance checks in torch's LR schedulers and
accelerate pass; like accelerate's AcceleratedOptimizer it never calls `Optimizer.__init__` and
shares the inner optimizer's `param_groups` and `state` objects, so an LR scheduler built on
the wrapper changes the inner optimizer's learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from alignment.optim.grit import GritPreconditioner

STATE_KEY = "grit"  # where the preconditioner's state sits in the optimizer's state_dict
MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "state1", "state2")


class GritOptimizer(torch.optim.Optimizer):
    """Clip + precondition, then `inner.step()`, then GRIT's schedule.

    Args:
        inner: the base optimizer (AdamW) over the trainable parameters.
        preconditioner: the GRIT preconditioner of the same model.
        max_grad_norm: clip the global gradient norm to this; 0 disables clipping.
        grad_clip_order: "clip_then_precondition" or "precondition_then_clip".
        reset_optimizer_state_on_reproject: zero the inner optimizer's moments of the
            reprojected tensors.
    """

    def __init__(
        self,
        inner: torch.optim.Optimizer,
        preconditioner: GritPreconditioner,
        max_grad_norm: float = 0.0,
        grad_clip_order: str = "clip_then_precondition",
        reset_optimizer_state_on_reproject: bool = False,
    ):
        if grad_clip_order not in ("clip_then_precondition", "precondition_then_clip"):
            raise ValueError(
                f"grad_clip_order must be clip_then_precondition or ..., got {grad_clip_order!r}"
            )
        self.inner = inner
        self.preconditioner = preconditioner
        self.max_grad_norm = max_grad_norm
        self.grad_clip_order = grad_clip_order
        self.reset_optimizer_state_on_reproject = reset_optimizer_state_on_reproject

    # Shared with the inner optimizer (same objects), as LR schedulers and accelerate expect.
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.inner.param_groups = value

    @property
    def state(self) -> dict:
        return self.inner.state

    @state.setter
    def state(self, value: dict) -> None:
        self.inner.state = value

    @property
    def defaults(self) -> dict[str, Any]:
        return self.inner.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.inner.defaults = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.inner.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            if self.grad_clip_order == "clip_then_precondition":
                self._clip()
                self.preconditioner.precondition()
            else:
                self.preconditioner.precondition()
                self._clip()
        self.inner.step()
        projected = self.preconditioner.step_end()
        if projected and self.reset_optimizer_state_on_reproject:
            self._reset_moments(projected)
        return loss

    def _clip(self) -> None:
        if self.max_grad_norm <= 0:
            return
        params = [p for g in self.inner.param_groups for p in g["params"] if p.grad is not None]
        if params:
            # Same call as accelerate's clip_grad_norm_; returns a device tensor, no host sync.
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)

    def _reset_moments(self, params: list[nn.Parameter]) -> None:
        for p in params:
            state = self.inner.state.get(p)
            if not state:
                continue
            for key, value in state.items():
                if key in MOMENT_KEYS or key == "step":
                    if torch.is_tensor(value):
                        value.zero_()
                    else:
                        state[key] = 0

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state_dict plus the preconditioner's under "grit"."""
        state = self.inner.state_dict()
        state[STATE_KEY] = self.preconditioner.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        grit_state = state.pop(STATE_KEY, None)
        self.inner.load_state_dict(state)
        if grit_state is not None:
            self.preconditioner.load_state_dict(grit_state)

    def __repr__(self) -> str:
        return f"GritOptimizer({self.inner!r}, grad_clip_order={self.grad_clip_order})"
