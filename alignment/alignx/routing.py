"""The MoCaE router and its natural/fractal calibration (spec/alignx.md section 3).

    p       = softmax(W_r phi(h) / T)                       router, W_r (A x 1024), T = 1
    p_nat_a ∝ exp(-||z - mu_a||_2)                          distance to the axis centroid in the
                                                            k-dim latent space ("natural")
    p_frac_a ∝ mean_j #{i in a : box_eps(x_ij) = box_eps(z_j)} / n_a
                                                            box-counting density of axis a's
                                                            points at scale eps ("fractal")
    p_cal   = (lambda1 p_nat + lambda2 p_frac) / (lambda1 + lambda2)
    w       = normalise(p * p_cal)  (combine=product), p_cal (calibration) or p (router)

phi(h) = tanh(Linear(H -> 1024)(h)) on the mean-pooled prompt state. Only 1024, 3 x 1024, T,
lambda1/lambda2 and eps come from the AlignX README; the feature map, both calibrators and the
way they combine with p are this reconstruction's assumptions (the reference code runs untrained
modules and weights its calibrators 1, 1, 1).

The fractal density is counted per latent coordinate (boxes of side eps on coordinates scaled
to [0, 1] by the reference points' range) and averaged over coordinates: a joint box in k = 256
dimensions would almost never hold a second point. A query with no neighbour in any box gets
the uniform distribution.
"""

from __future__ import annotations

import torch
from torch import nn

COMBINES = ("product", "calibration", "router")


def route_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dim; T must be > 0 (T -> 0 tends to one-hot argmax)."""
    if temperature <= 0:
        raise ValueError(f"alignx.temperature must be > 0, got {temperature}")
    return torch.softmax(logits / temperature, dim=-1)


class Router(nn.Module):
    """phi = tanh(Linear(H -> features)), then W_r: Linear(features -> A, no bias)."""

    def __init__(self, hidden: int, features: int = 1024, n_axes: int = 3) -> None:
        super().__init__()
        self.features = nn.Linear(hidden, features)
        self.w_r = nn.Linear(features, n_axes, bias=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, H) -> routing logits (B, A)."""
        return self.w_r(torch.tanh(self.features(pooled)))


def natural_probs(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """p_nat (B, A) ∝ exp(-Euclidean distance to each centroid); z (B, k), centroids (A, k)."""
    return torch.softmax(-torch.cdist(z, centroids), dim=-1)


class BoxCounts(nn.Module):
    """Per-coordinate box histograms of each axis's reference points at scale eps.

    Buffers (saved with the state dict): low/high (k,) the reference range per coordinate,
    counts (A, k, n_boxes) with n_boxes = ceil(1 / eps), sizes (A,) points per axis.
    """

    def __init__(self, k: int, n_axes: int, eps: float) -> None:
        super().__init__()
        if not 0 < eps <= 1:
            raise ValueError(f"alignx.eps must be in (0, 1], got {eps}")
        self.eps, self.n_boxes = eps, int(torch.ceil(torch.tensor(1.0 / eps)).item())
        self.register_buffer("low", torch.zeros(k))
        self.register_buffer("high", torch.ones(k))
        self.register_buffer("counts", torch.zeros(n_axes, k, self.n_boxes))
        self.register_buffer("sizes", torch.zeros(n_axes))

    def boxes(self, z: torch.Tensor) -> torch.Tensor:
        """Box index of every coordinate, (N, k) long in [0, n_boxes - 1]."""
        span = (self.high - self.low).clamp(min=1e-12)
        unit = ((z - self.low) / span).clamp(0.0, 1.0)
        return (unit / self.eps).floor().long().clamp(max=self.n_boxes - 1)

    @torch.no_grad()
    def fit(self, points: torch.Tensor, labels: torch.Tensor) -> BoxCounts:
        """Count the reference points (N, k) of each axis label (N,) per coordinate box."""
        self.low.copy_(points.min(dim=0).values)
        self.high.copy_(points.max(dim=0).values)
        boxes = self.boxes(points)  # (N, k)
        self.counts.zero_()
        for a in range(self.counts.shape[0]):
            own = boxes[labels == a]  # (n_a, k)
            self.sizes[a] = own.shape[0]
            ones = torch.ones_like(own, dtype=self.counts.dtype)
            self.counts[a].scatter_add_(1, own.T, ones.T)
        if bool((self.sizes == 0).any()):
            raise ValueError("fractal calibration: an axis has no reference point")
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """p_frac (B, A): normalised mean per-coordinate box density of each axis."""
        boxes = self.boxes(z)  # (B, k)
        a, k = self.counts.shape[:2]
        index = boxes.T.unsqueeze(0).expand(a, k, boxes.shape[0])  # (A, k, B)
        hits = self.counts.gather(2, index)  # (A, k, B)
        density = (hits.mean(dim=1) / self.sizes.unsqueeze(1)).T  # (B, A)
        total = density.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(density, 1.0 / a)
        return torch.where(total > 0, density / total.clamp(min=1e-30), uniform)


def calibrated_weights(
    p_router: torch.Tensor,
    p_nat: torch.Tensor,
    p_frac: torch.Tensor,
    lambda1: float = 0.6,
    lambda2: float = 0.4,
    combine: str = "product",
) -> torch.Tensor:
    """Expert weights (B, A) on the simplex from the router and the two calibrators."""
    if lambda1 < 0 or lambda2 < 0 or lambda1 + lambda2 <= 0:
        got = f"{lambda1}, {lambda2}"
        raise ValueError(f"alignx.lambda1/lambda2 must be >= 0 with a positive sum, got {got}")
    if combine not in COMBINES:
        raise ValueError(f"alignx.combine must be one of {COMBINES}, got {combine!r}")
    p_cal = (lambda1 * p_nat + lambda2 * p_frac) / (lambda1 + lambda2)
    if combine == "router":
        return p_router
    if combine == "calibration":
        return p_cal
    joint = p_router * p_cal
    total = joint.sum(dim=-1, keepdim=True)
    # Disjoint supports underflow to 0: fall back to the calibrators rather than divide by 0.
    return torch.where(total > 0, joint / total.clamp(min=1e-30), p_cal)
