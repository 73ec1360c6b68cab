"""The preflight as a whole: safety subspace -> overlap -> curvature coupling -> forecast.

`estimate_subspace` is the expensive part (per-sample gradients over the safety data) and depends
only on the model, the selected parameters and the safety data, so callers may cache it;
`assess` is cheap (a few fine-tuning batches) and depends on the run's method and learning rate.
Both take plain keyword arguments (the spec's defaults, which are the package's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignment.risk.curvature import (
    Coupling,
    Overlap,
    curvature_coupling,
    first_update,
    overlap_ratio,
)
from alignment.risk.forecast import (
    Forecast,
    forecast_collapse,
    lower_quantile,
    should_refine,
    warning_message,
)
from alignment.risk.gradients import LossFn, math_attention, per_sample_gradients
from alignment.risk.params import RiskInputError, Selection
from alignment.risk.subspace import SafetySubspace, subspace_from_gradients


@dataclass
class PreflightReport:
    subspace: SafetySubspace
    overlap: Overlap
    coupling: Coupling
    forecast: Forecast
    lambda_min: float
    learning_rate: float
    refined: bool
    warning: str
    threshold: float  # collapse_loss_threshold

    def metrics(self) -> dict[str, float]:
        """Scalars for MLflow. risk/collapse_step only when a collapse is forecast (no stand-in
        number otherwise); risk/collapse_predicted says which, risk/horizon up to where."""
        out = {
            "risk/overlap": self.overlap.ratio,
            "risk/eps_hat": self.coupling.eps_hat,
            "risk/gamma_hat": self.coupling.gamma_hat,
            "risk/rank": float(self.subspace.rank),
            "risk/lambda_min": self.lambda_min,
            "risk/horizon": float(self.forecast.steps[-1]),
            "risk/collapse_predicted": float(self.forecast.collapse_step is not None),
        }
        if self.forecast.collapse_step is not None:
            out["risk/collapse_step"] = float(self.forecast.collapse_step)
        return out


def estimate_subspace(
    model: torch.nn.Module,
    selection: Selection,
    batches: Sequence[dict],
    loss_fn: LossFn,
    *,
    max_samples: int = 128,
    top_rank: int = 32,
    target_explained_variance: float | None = 0.9,
    top_weight_count: int = 256,
    backend: str = "auto",
    progress: bool = True,
) -> SafetySubspace:
    """Per-sample safety-loss gradients -> empirical Fisher -> its top eigenspace."""
    G, used = per_sample_gradients(
        model,
        selection,
        batches,
        loss_fn,
        max_samples=max_samples,
        backend=backend,
        progress=progress,
    )
    return subspace_from_gradients(
        G,
        selection.slices,
        top_rank=top_rank,
        target_explained_variance=target_explained_variance,
        top_weight_count=top_weight_count,
        backend=used,
    )


def _coupled_forecast(
    model, selection, subspace, batches, ft_loss, learning_rate: float, **horizon
) -> tuple[Coupling, float, Forecast]:
    lam, basis = subspace.eigenvalues, subspace.eigenvectors
    coupling = curvature_coupling(model, selection, batches, ft_loss, lam, basis)
    lambda_min = lower_quantile(lam)
    # Per-step displacement scale: eps = eta * eps_hat, gamma = eta^2 * gamma_hat.
    gamma, epsilon = learning_rate**2 * coupling.gamma_hat, learning_rate * coupling.eps_hat
    return coupling, lambda_min, forecast_collapse(lambda_min, gamma, epsilon, **horizon)


def assess(
    model: torch.nn.Module,
    selection: Selection,
    subspace: SafetySubspace,
    ft_batches: Sequence[dict],
    ft_loss: LossFn,
    *,
    learning_rate: float = 1e-4,
    orthogonality_threshold: float = 0.05,
    curvature_batches: int = 1,
    refine: bool = True,
    refine_batches: int = 4,
    refine_fraction: float = 0.5,
    max_steps: int = 2000,
    step_size: float = 1.0,
    collapse_loss_threshold: float = 0.1,
    trust_region_warning_ratio: float = 5.0,
) -> PreflightReport:
    """Overlap of the first update, curvature coupling and the forecast, refined once on
    max(curvature_batches + 1, refine_batches) batches when the forecast is near a decision."""
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise RiskInputError(f"risk.learning_rate must be finite and > 0, got {learning_rate}")
    if not ft_batches:
        raise ValueError("the fine-tuning data gave no batches")
    horizon = dict(
        max_steps=max_steps, step_size=step_size, collapse_loss_threshold=collapse_loss_threshold
    )
    common = (model, selection, subspace)
    with math_attention():
        delta = first_update(model, selection, ft_batches[0], ft_loss, learning_rate=learning_rate)
        overlap = overlap_ratio(
            delta, subspace.eigenvectors, orthogonality_threshold=orthogonality_threshold
        )
        batches = ft_batches[:curvature_batches]
        coupling, lambda_min, forecast = _coupled_forecast(
            *common, batches, ft_loss, learning_rate, **horizon
        )
        refined = refine and refine_batches > curvature_batches
        refined = refined and should_refine(
            forecast,
            collapse_loss_threshold=collapse_loss_threshold,
            trigger_fraction=refine_fraction,
        )
        if refined:
            batches = ft_batches[: max(curvature_batches + 1, refine_batches)]
            coupling, lambda_min, forecast = _coupled_forecast(
                *common, batches, ft_loss, learning_rate, **horizon
            )
    report = PreflightReport(
        subspace, overlap, coupling, forecast, lambda_min, learning_rate, refined, "",
        collapse_loss_threshold,
    )  # fmt: skip
    drift_ratio = float(forecast.projected_drift.max()) / max(overlap.update_norm, 1e-12)
    report.warning = warning_message(
        forecast.collapse_step,
        overlap.low_overlap,
        refined=refined,
        large_drift=drift_ratio >= trust_region_warning_ratio,
    )
    return report
