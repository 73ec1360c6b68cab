"""Schemas of the `optimizer` config group: AdamW, 8-bit AdamW and GRIT (which wraps AdamW)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass
class OptimizerConfig:
    """The base optimizer and its learning-rate schedule.

    lr: LoRA DPO typically 5e-6..5e-4. max_grad_norm: 0 disables clipping.
    """

    name: str = MISSING
    lr: float = 5e-5
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr must be > 0, got {self.lr}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"optimizer.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"optimizer.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class AdamWConfig(OptimizerConfig):
    """torch.optim.AdamW (fused where the device allows)."""


@dataclass
class AdamW8bitConfig(OptimizerConfig):
    """bitsandbytes AdamW8bit: 8-bit optimizer states."""
