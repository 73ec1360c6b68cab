"""The parent MLflow run of a sweep, created once in the submitting process before fan-out.

Registered as a Hydra callback in conf/train.yaml. `on_multirun_start` creates the experiment and
a parent run tagged `sweep_id`; its id reaches every job (same process for the basic launcher,
the inherited environment for submitit's local and Slurm executors), and each job's run is
nested under it. A requeued job keeps its own run (the id is stored in its output directory).
It first checks the launcher's rank layout (`check_launcher`), so a bad one fails before anything
is submitted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PARENT_ENV, SWEEP_ENV = "ALIGNMENT_PARENT_RUN_ID", "ALIGNMENT_SWEEP_ID"


def check_launcher(launcher: DictConfig) -> None:
    """One rank per GPU: on a GPU partition (gpus_per_node set) tasks_per_node must equal it."""
    if "tasks_per_node" not in launcher:  # Hydra's basic launcher: one process, here
        return
    tasks, gpus = launcher.tasks_per_node, launcher.gpus_per_node
    if gpus and tasks != gpus:
        raise ValueError(
            f"hydra.launcher.tasks_per_node={tasks} but hydra.launcher.gpus_per_node={gpus}: "
            "a multi-rank run takes one task per GPU, so set both to the same number"
        )


class SweepParentRun(Callback):
    def __init__(self) -> None:
        self.client = None
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_launcher(config.hydra.launcher)
        except ValueError as err:  # Hydra turns a callback's exceptions into mere warnings
            raise SystemExit(f"error: {err}") from None
        if not config.tracking.enabled:
            return
        from alignment.config.run import TrackingConfig
        from alignment.tracking import Tracker

        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_id = sweep_dir.name
        cfg = TrackingConfig(uri=config.tracking.uri, experiment=config.tracking.experiment)
        tracker = Tracker(cfg, sweep_dir)  # creates the experiment as a run would (artifacts)
        self.client = tracker.client
        exp_id = tracker.experiment_id()
        overrides = " ".join(config.hydra.overrides.task)
        run = self.client.create_run(
            exp_id,
            run_name=f"sweep-{sweep_id}",
            tags={"sweep_id": sweep_id, "kind": "sweep", "overrides": overrides[:5000]},
        )
        self.run_id = run.info.run_id
        os.environ[PARENT_ENV], os.environ[SWEEP_ENV] = self.run_id, sweep_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status="FINISHED")
