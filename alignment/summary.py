"""The end-of-run summary: loss and reward-accuracy trend, where things were saved, how to look."""

from __future__ import annotations

import json
import logging
import math
import resource
from pathlib import Path

import torch

from alignment.config import RunConfig
from alignment.samples import before_after, to_markdown

log = logging.getLogger(__name__)


def peak_memory_gb() -> float:
    """Peak accelerator memory allocated by torch, or the process's peak RSS on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _trend(history: list[dict], key: str) -> tuple[float, float] | None:
    """Mean of the first and of the last quarter of the logged values (at least one each).

    Non-finite values (steps that train.nan_policy=skip_step dropped) are left out; the summary
    reports how many steps were skipped."""
    values = [h[key] for h in history if key in h and math.isfinite(h[key])]
    if not values:
        return None
    n = max(1, len(values) // 4)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def write_summary(cfg: RunConfig, trainer, tracker, adapter_dir: Path, out: Path) -> float | None:
    samples = []
    if cfg.train.samples > 0:
        samples = before_after(trainer.model, trainer.processing_class, cfg.train.samples)
        (out / "samples.md").write_text(to_markdown(samples))
    # A bounded wait (tracking.flush_timeout_s) so the summary names the run and what is unsent.
    unsent = tracker.flush() if tracker is not None else 0
    history = trainer.state.log_history
    loss = _trend(history, "loss")
    acc = _trend(history, "rewards/accuracy")
    summary = {
        "method": cfg.method.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "steps": trainer.state.global_step,
        "loss_start": loss[0] if loss else None,
        "loss_end": loss[1] if loss else None,
        "reward_accuracy_start": acc[0] if acc else None,
        "reward_accuracy_end": acc[1] if acc else None,
        "adapter": str(adapter_dir.resolve()),
        "mlflow_run_id": tracker.run_id if tracker else None,
        "mlflow_uri": tracker.uri if tracker else None,
        "mlflow_unsent_records": unsent,
    }
    summary["peak_memory_gb"] = peak_memory_gb()
    summary["skipped_steps"] = trainer.guard.skipped
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if tracker is not None:
        tracker.log_metrics(
            {"train/peak_memory_gb": summary["peak_memory_gb"]}, trainer.state.global_step
        )
        if cfg.tracking.log_adapter:
            tracker.log_artifact(adapter_dir, "adapter")
        tracker.log_artifact(out / "summary.json")
        if samples:
            tracker.log_artifact(out / "samples.md")
    lines = [f"trained {cfg.method.name} on {cfg.model.name}: {summary['steps']} optimizer steps"]
    if loss:
        lines.append(
            f"  loss            {loss[0]:.4f} -> {loss[1]:.4f}  (first vs last quarter of steps)"
        )
    if acc:
        lines.append(f"  reward accuracy {acc[0]:.3f} -> {acc[1]:.3f}")
    if trainer.guard.skipped:
        lines.append(f"  skipped steps   {trainer.guard.skipped} (non-finite; train.nan_policy)")
    for row in samples[:1]:
        lines.append(f"  prompt          {row['prompt']}")
        lines.append(f"    before        {row['before'][:160]!r}")
        lines.append(f"    after         {row['after'][:160]!r}")
    lines.append(f"  adapter saved   {adapter_dir.resolve()}")
    if tracker is not None:
        run_id = tracker.run_id or "not created yet (MLflow has not answered)"
        lines.append(f"  MLflow run      {run_id} (experiment {cfg.tracking.experiment!r})")
        if unsent:
            lines.append(f"  not in MLflow   {unsent} records so far (kept in the run directory)")
        lines.append(f"  look at it:     mlflow ui --backend-store-uri {tracker.uri}")
    log.info("\n".join(lines))
    return loss[1] if loss else None
