"""The shared latent alignment space of AlignX-repro: a projector P: R^H -> R^k (k = 256) on the
mean-pooled last hidden state, trained in stage 1 with an axis-classification head.

The README names k = 256 but neither the README nor the code says how P is trained; the axis
classification head (cross-entropy on the axis label of each prompt) is this reconstruction's
choice. The pooled states come from the base model (experts off), so all experts share one space.
"""

from __future__ import annotations

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over the positions where mask is 1.

    Shapes: hidden (B, S, H), mask (B, S) -> (B, H). A row without any position raises.
    """
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, S, 1)
    counts = weights.sum(dim=1)  # (B, 1)
    if bool((counts == 0).any()):
        raise ValueError("mean_pool: a row has no unmasked position")
    return (hidden * weights).sum(dim=1) / counts


class LatentProjector(nn.Module):
    """z = P h (k dims) and an axis classifier on z that trains P."""

    def __init__(self, hidden: int, k: int = 256, n_axes: int = 3) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden, k)
        self.head = nn.Linear(k, n_axes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, H) -> z (B, k)."""
        return self.proj(pooled)

    def axis_logits(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, k) -> axis logits (B, A)."""
        return self.head(z)


def axis_centroids(z: torch.Tensor, labels: torch.Tensor, n_axes: int) -> torch.Tensor:
    """mu_a = mean of the z with label a. Shapes: z (N, k), labels (N,) -> (A, k).

    Every axis needs at least one point (a centroid of nothing is undefined).
    """
    counts = torch.bincount(labels, minlength=n_axes)
    if bool((counts == 0).any()):
        empty = [a for a in range(n_axes) if counts[a] == 0]
        raise ValueError(f"axis_centroids: no latent point for axes {empty}")
    sums = torch.zeros(n_axes, z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, labels, z)
    return sums / counts.unsqueeze(1).to(z.dtype)
