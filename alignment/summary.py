"""The end-of-run summary: loss and reward-accuracy trend, held-out refusal and answer rates
(alignment/samples.py), where things were saved, and how to look at the run."""

from __future__ import annotations

import json
import logging
import math
import resource
from pathlib import Path

import torch

from alignment.config import RunConfig
from alignment.samples import before_after, heldout_rates, to_markdown

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


def _rate_lines(rates: dict) -> list[str]:
    pct = lambda key: f"{100 * rates[key]:5.1f}%"  # noqa: E731
    harmful, benign = rates["n_harmful"], rates["n_benign"]
    return [
        f"  refusals        {pct('refusal_rate_harmful_before')} -> "
        f"{pct('refusal_rate_harmful_after')}  on {harmful} held-out harmful prompts",
        f"  answers         {pct('answer_rate_benign_before')} -> "
        f"{pct('answer_rate_benign_after')}  on {benign} held-out benign prompts",
    ]


def _report(cfg: RunConfig, summary: dict, samples: list[dict], tracker) -> str:
    lines = [f"trained {cfg.method.name} on {cfg.model.name}: {summary['steps']} optimizer steps"]
    if summary["loss_start"] is not None:
        lines.append(
            f"  loss            {summary['loss_start']:.4f} -> {summary['loss_end']:.4f}"
            "  (first vs last quarter of steps)"
        )
    if summary["reward_accuracy_start"] is not None:
        start, end = summary["reward_accuracy_start"], summary["reward_accuracy_end"]
        lines.append(f"  reward accuracy {start:.3f} -> {end:.3f}")
    if summary["skipped_steps"]:
        skipped = summary["skipped_steps"]
        lines.append(f"  skipped steps   {skipped} (non-finite; train.nan_policy)")
    if summary["heldout"]:
        lines += _rate_lines(summary["heldout"])
    for row in samples[:1]:
        lines.append(f"  prompt          {row['prompt']}")
        lines.append(f"    before        {row['before'][:160]!r}")
        lines.append(f"    after         {row['after'][:160]!r}")
    lines.append(f"  adapter saved   {summary['adapter']}")
    if tracker is not None:
        run_id = tracker.run_id or "not created yet (MLflow has not answered)"
        lines.append(f"  MLflow run      {run_id} (experiment {cfg.tracking.experiment!r})")
        if summary["mlflow_unsent_records"]:
            unsent = summary["mlflow_unsent_records"]
            lines.append(f"  not in MLflow   {unsent} records so far (kept in the run directory)")
        lines.append(f"  look at it:     mlflow ui --backend-store-uri {tracker.uri}")
    return "\n".join(lines)


def _log(cfg: RunConfig, tracker, summary: dict, adapter_dir: Path, out: Path, step: int) -> None:
    metrics = {"train/peak_memory_gb": summary["peak_memory_gb"]}
    metrics |= {f"heldout/{k}": v for k, v in (summary["heldout"] or {}).items()}
    tracker.log_metrics(metrics, step)
    if cfg.tracking.log_adapter:
        tracker.log_artifact(adapter_dir, "adapter")
    for name in ("summary.json", "samples.md", "heldout_answers.jsonl"):
        if (out / name).is_file():
            tracker.log_artifact(out / name)


def write_summary(cfg: RunConfig, trainer, tracker, adapter_dir: Path, out: Path) -> float | None:
    """Write summary.json (and with train.samples > 0 samples.md and heldout_answers.jsonl), log
    them and the held-out rates to MLflow, and log the end-of-run report; returns the end loss."""
    samples, rates = [], None
    model, tokenizer = trainer.model, trainer.processing_class
    if cfg.train.samples > 0:
        samples = before_after(model, tokenizer, cfg.train.samples)
        (out / "samples.md").write_text(to_markdown(samples))
        rates, rows = heldout_rates(model, tokenizer)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / "heldout_answers.jsonl").write_text(lines, encoding="utf-8")
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
        "heldout": rates,
        "adapter": str(adapter_dir.resolve()),
        "mlflow_run_id": tracker.run_id if tracker else None,
        "mlflow_uri": tracker.uri if tracker else None,
        "mlflow_unsent_records": unsent,
        "peak_memory_gb": peak_memory_gb(),
        "skipped_steps": trainer.guard.skipped,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if tracker is not None:
        _log(cfg, tracker, summary, adapter_dir, out, trainer.state.global_step)
    log.info(_report(cfg, summary, samples, tracker))
    return loss[1] if loss else None
