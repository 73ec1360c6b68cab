"""MoCaE: the state AlignX-repro learns besides the LoRA experts, and the expert weights it gives.

    x = (pooled - mean) / std                 standardised prompt state (statistics of stage 1)
    z = P x                                   latent, k = 256 (stage 1, axis classification)
    p = softmax(W_r tanh(F x) / T)            router (stage 2)
    w = calibrated_weights(p, p_nat(z), p_frac(z), lambda1, lambda2, combine)

Standardising matters for real models, whose pooled states have a few very large coordinates
that would saturate the router's tanh and dominate the latent distances.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from alignment.alignx.latent import LatentProjector, axis_centroids
from alignment.alignx.routing import (
    BoxCounts,
    Router,
    calibrated_weights,
    natural_probs,
    route_probs,
)

STATE_FILE, SETTINGS_FILE = "mocae.safetensors", "mocae.json"


class Mocae(nn.Module):
    def __init__(
        self, hidden: int, n_axes: int = 3, k: int = 256, features: int = 1024, eps: float = 0.05
    ) -> None:
        super().__init__()
        self.settings = {"hidden": hidden, "n_axes": n_axes, "k": k, "features": features}
        self.settings["eps"] = eps
        self.register_buffer("mean", torch.zeros(hidden))
        self.register_buffer("std", torch.ones(hidden))
        self.register_buffer("centroids", torch.zeros(n_axes, k))
        self.projector = LatentProjector(hidden, k, n_axes)
        self.router = Router(hidden, features, n_axes)
        self.boxes = BoxCounts(k, n_axes, eps)

    @torch.no_grad()
    def fit_scaler(self, pooled: torch.Tensor) -> None:
        self.mean.copy_(pooled.mean(dim=0))
        self.std.copy_(pooled.std(dim=0).clamp(min=1e-6))

    def standardize(self, pooled: torch.Tensor) -> torch.Tensor:
        return (pooled.to(self.mean.dtype) - self.mean) / self.std

    def latent(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, H) -> z (B, k)."""
        return self.projector(self.standardize(pooled))

    def route_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, H) -> router logits (B, A)."""
        return self.router(self.standardize(pooled))

    @torch.no_grad()
    def fit_calibrators(self, pooled: torch.Tensor, labels: torch.Tensor) -> None:
        """Axis centroids and box counts of the reference prompts' latents."""
        z = self.latent(pooled)
        self.centroids.copy_(axis_centroids(z, labels, self.centroids.shape[0]))
        self.boxes.fit(z, labels)

    def weights(
        self,
        pooled: torch.Tensor,
        temperature: float = 1.0,
        lambda1: float = 0.6,
        lambda2: float = 0.4,
        combine: str = "product",
    ) -> torch.Tensor:
        """Expert weights (B, A) on the simplex for pooled prompt states (B, H)."""
        z = self.latent(pooled)
        p = route_probs(self.route_logits(pooled), temperature)
        p_nat, p_frac = natural_probs(z, self.centroids), self.boxes(z)
        return calibrated_weights(p, p_nat, p_frac, lambda1, lambda2, combine)


def save_mocae(mocae: Mocae, directory: Path) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in mocae.state_dict().items()}
    save_file(state, str(directory / STATE_FILE))
    (directory / SETTINGS_FILE).write_text(json.dumps(mocae.settings, indent=2))
    return directory


def load_mocae(directory: Path) -> Mocae:
    from safetensors.torch import load_file

    for name in (SETTINGS_FILE, STATE_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"AlignX-repro router file not found: {directory / name}")
    mocae = Mocae(**json.loads((directory / SETTINGS_FILE).read_text()))
    mocae.load_state_dict(load_file(str(directory / STATE_FILE)))
    return mocae.eval()
