"""Typed inputs and outputs of the pure loss functions."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossOutput:
    """A scalar loss plus per-example diagnostics (all detached except `loss`).

    metrics: name -> tensor of shape (B,) or () to be averaged and logged as `train/<name>`.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
