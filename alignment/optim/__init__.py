"""build_optimizer: the config's optimizer over the trainable (LoRA) parameters.

Returns the optimizer and, for GRIT, the preconditioner the trainer talks to (regulariser,
loss history, token mask, metrics). The GRIT wrapper clips gradients itself, in the configured
order relative to preconditioning.
"""

from __future__ import annotations

from typing import Protocol

import torch

from alignment.config import OptimizerConfig


class Preconditioner(Protocol):
    stats_mask: str

    def regularization_loss(self) -> torch.Tensor | None: ...
    def observe_loss(self, loss: torch.Tensor) -> None: ...
    def set_token_mask(self, mask: torch.Tensor | None) -> None: ...
    def metrics(self) -> dict[str, float]: ...


def _adamw(
    name: str, cfg: OptimizerConfig, params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    kwargs = dict(
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    if name == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, **kwargs)
    fused = bool(params) and params[0].is_cuda
    return torch.optim.AdamW(params, fused=fused, **kwargs)


def build_optimizer(
    cfg: OptimizerConfig, model: torch.nn.Module
) -> tuple[torch.optim.Optimizer, Preconditioner | None]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (is the LoRA adapter attached?)")
    if cfg.name in ("adamw", "adamw_8bit"):
        return _adamw(cfg.name, cfg, params), None
    if cfg.name == "grit":
        from alignment.optim.grit import build_grit

        inner = _adamw(cfg.base, cfg, params)
        return build_grit(cfg, model, inner)
    raise KeyError(f"unknown optimizer {cfg.name!r}; choose one of ['adamw', 'adamw_8bit', 'grit']")
