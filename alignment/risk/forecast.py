"""The quartic stability forecast and the collapse step (spec/alignment_risk.md section 4).

Per-step scaling eps = eta * eps_hat, gamma = eta^2 * gamma_hat, lambda_min = the 10% lower
quantile of the retained eigenvalues; for t = 0..T (time t * step_size):

    drift(t)   = max(0, gamma t^2 / 2 - eps t)     lower bound on ||F^{1/2} P delta(t)||
                                                   ([AIC-2026] Thm 6.2 / Cor 6.3)
    loss(t)    = lambda_min * drift(t)^2 / 2       predicted safety-loss increase
    quartic(t) = lambda_min * gamma^2 * t^4 / 8    its large-t asymptote

collapse_step = the first t with loss(t) >= collapse_loss_threshold, else None. With eps = 0,
loss = quartic and collapse_step = ceil((8 tau / (lambda_min gamma^2))^(1/4)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Forecast:
    """Arrays of shape (T + 1,); collapse_time = collapse_step * step_size."""

    steps: np.ndarray
    times: np.ndarray
    projected_drift: np.ndarray
    quartic_lower_bound: np.ndarray
    estimated_loss: np.ndarray
    collapse_step: int | None
    collapse_time: float | None


def lower_quantile(eigenvalues: torch.Tensor, q: float = 0.1) -> float:
    """lambda_min: never above the smallest retained eigenvalue for small ranks; 0 if none."""
    lam = eigenvalues.clamp(min=0.0)
    if lam.numel() == 0:
        return 0.0
    return float(torch.quantile(lam, q=q, interpolation="lower"))


def forecast_collapse(
    lambda_min: float,
    gamma: float,
    epsilon: float,
    *,
    max_steps: int = 2000,
    step_size: float = 1.0,
    collapse_loss_threshold: float = 0.1,
) -> Forecast:
    """The forecast arrays for per-step gamma and epsilon (see the module docstring)."""
    for name, value in (("lambda_min", lambda_min), ("gamma", gamma), ("epsilon", epsilon)):
        if not math.isfinite(value) or value < 0.0:
            raise ValueError(f"risk forecast: {name} must be finite and >= 0, got {value}")
    if max_steps < 0 or step_size <= 0.0 or collapse_loss_threshold < 0.0:
        raise ValueError("risk.max_steps must be >= 0, step_size > 0, threshold >= 0")
    steps = np.arange(max_steps + 1, dtype=int)
    times = steps.astype(float) * step_size
    drift = np.maximum(0.5 * gamma * times**2 - epsilon * times, 0.0)
    loss = 0.5 * lambda_min * drift**2
    quartic = (lambda_min * gamma**2 / 8.0) * times**4
    crossed = np.flatnonzero(loss >= collapse_loss_threshold)
    step = int(crossed[0]) if crossed.size else None
    return Forecast(
        steps, times, drift, quartic, loss, step, float(times[step]) if step is not None else None
    )


def should_refine(
    forecast: Forecast, *, collapse_loss_threshold: float, trigger_fraction: float = 0.5
) -> bool:
    """Re-estimate the curvature on more batches when the forecast sits near a decision:
    no collapse but loss(T) >= fraction * threshold, or collapse_step >= fraction * T."""
    max_steps = int(forecast.steps[-1])
    if forecast.collapse_step is None:
        return float(forecast.estimated_loss[-1]) >= collapse_loss_threshold * trigger_fraction
    return forecast.collapse_step >= int(max_steps * trigger_fraction)


def warning_message(
    collapse_step: int | None, low_overlap: bool, *, refined: bool, large_drift: bool
) -> str:
    """The package's warning strings, word for word."""
    if collapse_step is not None:
        message = f"Collapse predicted at step {collapse_step}."
    elif low_overlap:
        message = (
            "Low initial overlap detected. No collapse crossed threshold in the current horizon."
        )
    else:
        message = "No collapse predicted within the configured step horizon."
    if refined:
        message += " Curvature estimate was automatically refined on additional batches."
    if large_drift:
        message += (
            " Forecast entered a large-drift regime; local quadratic approximation may be less "
            "reliable."
        )
    return message
