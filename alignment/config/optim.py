"""Schemas of the `optimizer` config group: AdamW, 8-bit AdamW and GRIT (which wraps AdamW)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from omegaconf import MISSING

from alignment.config.checks import check, check_choice

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass
class OptimizerConfig:
    """The base optimizer and its learning-rate schedule.

    lr: LoRA DPO typically 5e-6..5e-4. max_grad_norm: 0 disables clipping.
    warmup_steps: a fixed number of linear warm-up steps; when > 0 it replaces warmup_ratio (the
      fraction of all training steps).
    """

    # Whether it can step FSDP-sharded parameters (not a config key: a property of the optimizer).
    shards_with_fsdp: ClassVar[bool] = True

    name: str = MISSING
    lr: float = 5e-5
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    warmup_steps: int = 0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        check("optimizer.lr", self.lr, gt=0)
        check_choice("optimizer.scheduler", self.scheduler, SCHEDULERS)
        check("optimizer.warmup_ratio", self.warmup_ratio, ge=0, lt=1)
        check("optimizer.warmup_steps", self.warmup_steps, ge=0)
        check("optimizer.weight_decay", self.weight_decay, ge=0)
        check("optimizer.beta1", self.beta1, ge=0, lt=1)
        check("optimizer.beta2", self.beta2, ge=0, lt=1)
        check("optimizer.eps", self.eps, gt=0)
        check("optimizer.max_grad_norm", self.max_grad_norm, ge=0)


@dataclass
class AdamWConfig(OptimizerConfig):
    """torch.optim.AdamW (fused where the device allows)."""


@dataclass
class AdamW8bitConfig(OptimizerConfig):
    """bitsandbytes AdamW8bit: 8-bit optimizer states."""
