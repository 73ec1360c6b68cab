"""The preflight's artifacts: the forecast and the sensitivity map as PNG, the arrays as JSON.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state), so they work headless
and in threads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alignment.risk.preflight import PreflightReport
from alignment.risk.subspace import SafetySubspace

FORECAST_PNG, SENSITIVITY_PNG, REPORT_JSON = "forecast.png", "sensitivity.png", "preflight.json"


def forecast_figure(report: PreflightReport, path: Path, planned_steps: int | None = None) -> Path:
    f = report.forecast
    fig = Figure(figsize=(8, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(f.times, f.estimated_loss, label="predicted safety-loss increase")
    ax.plot(f.times, f.quartic_lower_bound, linestyle="--", label="quartic asymptote")
    ax.axhline(report.threshold, color="grey", linewidth=0.8, label="collapse threshold")
    if f.collapse_time is not None:
        ax.axvline(f.collapse_time, color="red", linestyle=":", label=f"collapse {f.collapse_step}")
    if planned_steps is not None:
        ax.axvline(planned_steps, color="black", linestyle="-.", label=f"planned {planned_steps}")
    # Log scale (zeros masked): the curves span many decades below the threshold.
    ax.set_yscale("log", nonpositive="mask")
    curves = np.concatenate([f.estimated_loss, f.quartic_lower_bound])
    floor = curves[curves > 0].min() if (curves > 0).any() else report.threshold
    ax.set_ylim(bottom=max(min(floor, report.threshold) / 10, report.threshold * 1e-15))
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("predicted alignment loss")
    ax.set_title(f"Stability forecast (eta={report.learning_rate:g})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def sensitivity_figure(subspace: SafetySubspace, path: Path) -> Path:
    names = list(subspace.module_scores)
    fig = Figure(figsize=(max(6, 0.3 * len(names) + 2), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), [subspace.module_scores[n] for n in names])
    ax.set_xticks(range(len(names)), [n.replace("base_model.model.", "") for n in names])
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.set_ylabel("mean Fisher diagonal")
    ax.set_title(f"Sensitivity map (rank {subspace.rank}, {subspace.samples} pairs)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def report_dict(report: PreflightReport, top_k: int = 256) -> dict:
    """Everything the preflight computed, as JSON-ready values (no NaN stand-ins)."""
    s, f = report.subspace, report.forecast
    top = []
    pairs = zip(
        s.top_weight_indices[:top_k].tolist(), s.top_weight_scores[:top_k].tolist(), strict=True
    )
    for i, score in pairs:
        sl = next(x for x in s.slices if x.start <= i < x.end)
        top.append({"parameter": sl.name, "offset": i - sl.start, "score": score})
    return {
        "metrics": report.metrics(),
        "warning": report.warning,
        "learning_rate": report.learning_rate,
        "collapse_loss_threshold": report.threshold,
        "refined": report.refined,
        "backend": s.backend,
        "samples": s.samples,
        "rank": s.rank,
        "eigenvalues": s.eigenvalues.tolist(),
        "spectrum": s.spectrum.tolist(),
        "overlap": vars(report.overlap),
        "coupling": vars(report.coupling),
        "lambda_min": report.lambda_min,
        "collapse_step": f.collapse_step,
        "forecast": {
            "steps": f.steps.tolist(),
            "projected_drift": f.projected_drift.tolist(),
            "estimated_loss": f.estimated_loss.tolist(),
            "quartic_lower_bound": f.quartic_lower_bound.tolist(),
        },
        "module_scores": s.module_scores,
        "parameters": [[x.name, list(x.shape)] for x in s.slices],
        "top_weights": top,
    }


def write_artifacts(report: PreflightReport, out: Path, planned_steps: int | None = None) -> list:
    """forecast.png, sensitivity.png and preflight.json under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = report_dict(report) | {"planned_steps": planned_steps}
    (out / REPORT_JSON).write_text(json.dumps(data, indent=1))
    return [
        forecast_figure(report, out / FORECAST_PNG, planned_steps),
        sensitivity_figure(report.subspace, out / SENSITIVITY_PNG),
        out / REPORT_JSON,
    ]
