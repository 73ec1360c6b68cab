"""The trained model next to its base model: one table of the same metrics.

The baseline numbers come from a baseline run of the same model and suites already in the
experiment, or else from the loaded model with its adapters disabled (the exact base weights),
logged into a new baseline run tagged like a training run, so the grid compares like with like.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from alignment.config.evaluate import EvaluateConfig
from alignment.evaluation.generation import adapters_disabled
from alignment.methods import BaselineConfig
from alignment.runinfo import run_name, run_tags
from alignment.tracking import Tracker, flatten

log = logging.getLogger(__name__)


def find_baseline(
    tracker: Tracker, cfg: EvaluateConfig, keys: list[str]
) -> dict[str, float] | None:
    exp = tracker.client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    query = f"tags.method = 'baseline' and tags.model = '{cfg.model.name}'"
    for run in tracker.client.search_runs([exp.experiment_id], query, max_results=20):
        if all(k in run.data.metrics for k in keys):
            log.info("baseline metrics from MLflow run %s", run.info.run_id)
            return {k: run.data.metrics[k] for k in keys}
    return None


def evaluate_baseline(
    cfg: EvaluateConfig,
    model,
    tokenizer,
    run_eval,
    weights_key: str,
    like: dict[str, str] | None = None,
):
    """Score the adapter-disabled model into its own baseline run, tagged like the training run
    it is the baseline of (`like`: that run's optimizer, dataset, seed, tag), method baseline."""
    base_cfg = dataclasses.replace(cfg, method=BaselineConfig(name="baseline"), run=None)
    tracker = Tracker(cfg.tracking, Path(cfg.output_dir) / "baseline")
    tags = run_tags(base_cfg) | (like or {}) | {"method": "baseline", "eval_only": "true"}
    tracker.start(flatten(dataclasses.asdict(base_cfg)), tags, run_name(base_cfg, "eval"))
    with adapters_disabled(model):
        metrics = run_eval(base_cfg, model, tokenizer, tracker, weights_key=weights_key,
                           has_adapter=False)  # fmt: skip
    tracker.end("FINISHED")
    return metrics


def side_by_side(trained: dict[str, float], baseline: dict[str, float]) -> str:
    """A plain-text table: metric, trained, baseline, difference."""
    keys = sorted(k for k in trained if k in baseline and "/" in k and not k.endswith("_n"))
    width = max([len(k) for k in keys] + [6])
    lines = [f"{'metric':<{width}}  {'trained':>9}  {'baseline':>9}  {'diff':>9}"]
    for k in keys:
        t, b = trained[k], baseline[k]
        lines.append(f"{k:<{width}}  {t:>9.4f}  {b:>9.4f}  {t - b:>+9.4f}")
    return "\n".join(lines)
