"""The optimizer registry: a name -> its schema, its builder, and whether it clips gradients.

`build_optimizer(cfg, model)` returns the optimizer over the trainable (LoRA) parameters and,
for GRIT, the preconditioner the trainer talks to (regulariser, loss history, token mask,
metrics). An entry with `clips_gradients=True` clips inside its own `step()` (GRIT does, in the
configured order relative to preconditioning), so the trainer must not clip as well:
`trainer_max_grad_norm` is the one place that decision is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from alignment.config import AdamW8bitConfig, AdamWConfig, GritConfig, OptimizerConfig
from alignment.registry import Registry


class Preconditioner(Protocol):
    stats_mask: str

    def regularization_loss(self) -> torch.Tensor | None: ...
    def observe_loss(self, loss: torch.Tensor) -> None: ...
    def set_token_mask(self, mask: torch.Tensor | None) -> None: ...
    def metrics(self) -> dict[str, float]: ...


Built = tuple[torch.optim.Optimizer, Preconditioner | None]


@dataclass(frozen=True)
class OptimizerEntry:
    name: str
    schema: type[OptimizerConfig]
    build: Callable[[OptimizerConfig, torch.nn.Module, list[torch.nn.Parameter]], Built]
    clips_gradients: bool = False


OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer")


def register(entry: OptimizerEntry) -> OptimizerEntry:
    OPTIMIZERS.add(entry.name, entry)
    return entry


def adamw(cfg: OptimizerConfig, params: list[torch.nn.Parameter], eight_bit: bool = False):
    kwargs = dict(
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    if eight_bit:
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, **kwargs)
    fused = bool(params) and params[0].is_cuda
    return torch.optim.AdamW(params, fused=fused, **kwargs)


def _grit(cfg: GritConfig, model: torch.nn.Module, params: list[torch.nn.Parameter]) -> Built:
    from alignment.optim.grit import build_grit

    return build_grit(cfg, model, adamw(cfg, params, eight_bit=cfg.base == "adamw_8bit"))


register(OptimizerEntry("adamw", AdamWConfig, lambda cfg, model, ps: (adamw(cfg, ps), None)))
register(
    OptimizerEntry(
        "adamw_8bit", AdamW8bitConfig, lambda cfg, model, ps: (adamw(cfg, ps, True), None)
    )
)
register(OptimizerEntry("grit", GritConfig, _grit, clips_gradients=True))


def build_optimizer(cfg: OptimizerConfig, model: torch.nn.Module) -> Built:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (is the LoRA adapter attached?)")
    return OPTIMIZERS.get(cfg.name).build(cfg, model, params)


def trainer_max_grad_norm(cfg: OptimizerConfig) -> float:
    """The clipping the Trainer should do: none when the optimizer clips itself."""
    return 0.0 if OPTIMIZERS.get(cfg.name).clips_gradients else cfg.max_grad_norm
