"""Stacked runs (`experiment=stacked`): Base -> SFT -> DPO -> CITA as one command.

`run_stacked` trains `cfg.stages` in order and then `cfg.method`, each stage through the
ordinary `run_training` with a derived config: its own method, its own output directory
(`<run dir>/stages/<i>-<name>/`), `model.init_adapter` set to the previous stage's adapter (so
it starts from that policy and uses it as pi_ref; the first stage starts from the command's own
`model.init_adapter`, a fresh LoRA by default), and its MLflow run nested under one parent run
that lives in the command's run directory. Everything else (model, optimizer, data, train
settings, seed) is the command's.

Resuming is run_training's own, per stage: running the command again reopens the parent run
(its id is in the run directory), skips every stage that wrote DONE, and resumes the stage that
was cut off from its last checkpoint into its own MLflow run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from alignment import distributed
from alignment.config import RunConfig
from alignment.config.secrets import scrub
from alignment.guards import failure_line
from alignment.runinfo import run_name, run_tags
from alignment.tracking import Tracker, flatten

log = logging.getLogger(__name__)
STAGES_DIR = "stages"


def stage_config(cfg: RunConfig, i: int, parent_run_id: str | None) -> RunConfig:
    """Stage i's RunConfig (0-based): stage i > 0 starts from stage i-1's adapter. Derived just
    before the stage runs, since the adapter it starts from exists only from then on."""
    methods: list[tuple[str, Any]] = [*cfg.stages.items(), (cfg.method.name, cfg.method)]
    name, method = methods[i]
    out, base_name = Path(cfg.output_dir), run_name(cfg)
    label = f"{i + 1}-{name}"
    tags = {**cfg.tracking.tags, "stage": label, "stacked": base_name}
    if parent_run_id is not None:  # the stage's run nests under the command's
        tags["mlflow.parentRunId"] = parent_run_id
    model = cfg.model
    if i > 0:
        previous = out / STAGES_DIR / f"{i}-{methods[i - 1][0]}" / "adapter"
        model = dataclasses.replace(cfg.model, init_adapter=str(previous))
    return dataclasses.replace(
        cfg,
        method=method,
        model=model,
        output_dir=str(out / STAGES_DIR / label),
        tracking=dataclasses.replace(cfg.tracking, run_name=f"{base_name}/{label}", tags=tags),
        stages={},
    )


def run_stacked(cfg: RunConfig) -> float | None:
    """Train every stage in order; the final stage's loss. Raises what a stage raises."""
    if distributed.environment().world_size > 1:
        # Each stage would set up and tear down its own process group, and a later stage's
        # ranks would need the previous adapter that rank 0 alone writes: not supported yet.
        raise distributed.StrategyError(
            "experiment=stacked runs on one rank; train the stages one by one with "
            "model.init_adapter=<previous stage's adapter> for multi-rank stages"
        )
    parent = _start_parent(cfg)
    parent_id = _parent_run_id(parent) if parent else None
    final = None
    try:
        for i in range(len(cfg.stages) + 1):
            stage = stage_config(cfg, i, parent_id)
            log.info("stage %s: %s", stage.tracking.tags["stage"], stage.output_dir)
            final = _run_stage(stage)
    except Exception as err:
        if parent is not None:
            parent.set_tags({"failure": failure_line(err)})
            parent.end("FAILED")
        raise
    except BaseException:
        if parent is not None:
            parent.end("KILLED")
        raise
    if parent is not None:
        if final is not None:
            parent.log_metrics({"final_loss": final}, step=0)
        parent.end("FINISHED")
    return final


def _run_stage(stage: RunConfig) -> float | None:
    from alignment.pipeline import run_training  # the pipeline dispatches stacked runs here

    return run_training(stage)


def _parent_run_id(parent: Tracker) -> str | None:
    """The parent run's id, once MLflow has created it (the tracker's sender does that in the
    background); a stage nests under it through its creation tags, so it is awaited, within
    tracking.flush_timeout_s. Without it the stages still carry the tag stacked=<parent name>."""
    deadline = time.monotonic() + parent.cfg.flush_timeout_s
    while parent.run_id is None and time.monotonic() < deadline:
        parent.sender.notify()
        time.sleep(0.05)
    if parent.run_id is None:
        log.warning(
            "stacked: MLflow has not created the parent run within %.0f s; the stages log their "
            "own runs, tagged stacked=<parent run name>, not nested under it",
            parent.cfg.flush_timeout_s,
        )
    return parent.run_id


def _start_parent(cfg: RunConfig) -> Tracker | None:
    """The command's MLflow run (reopened on a rerun): its config and overrides, no metrics of
    its own but the final stage's loss. Tagged kind=stacked, so reports skip it like a sweep's
    parent; it carries no `method` tag (its stages do)."""
    if not cfg.tracking.enabled:
        return None
    out = Path(cfg.output_dir)
    tracker = Tracker(cfg.tracking, out)
    names = [*cfg.stages, cfg.method.name]
    tags = {k: v for k, v in run_tags(cfg).items() if k != "method"}
    tags |= {"kind": "stacked", "stages": ",".join(names)}
    tracker.start(flatten(dataclasses.asdict(cfg)), tags, run_name(cfg, "stacked"))
    if not tracker.resumed:
        out.mkdir(parents=True, exist_ok=True)
        resolved = out / "resolved_config.yaml"
        resolved.write_text(yaml.safe_dump(scrub(dataclasses.asdict(cfg)), sort_keys=False))
        tracker.log_artifact(resolved)
        if (out / ".hydra").is_dir():  # `python train.py rerun=<parent id>` reruns the chain
            tracker.log_artifact(out / ".hydra", ".hydra")
    return tracker
