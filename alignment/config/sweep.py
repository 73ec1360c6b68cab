"""The parent MLflow run of a sweep, created once in the submitting process before fan-out.

Registered as a Hydra callback in conf/train.yaml. `on_multirun_start` creates the experiment and
a parent run tagged `sweep_id`; its id reaches every job (same process for the basic launcher,
the inherited environment for submitit's local and Slurm executors), and each job's run is
nested under it. A requeued job keeps its own run (the id is stored in its output directory).
It first checks the launcher's rank layout (`check_launcher`), so a bad one fails before anything
is submitted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)
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
        from alignment.tracking.remote import describe, experiment_id, make_client, resolve_uri

        sweep_id = Path(str(config.hydra.sweep.dir)).name
        os.environ[SWEEP_ENV] = sweep_id
        uri = resolve_uri(config.tracking.uri)
        overrides = " ".join(config.hydra.overrides.task)
        try:  # one short attempt: a dead server must not hold up the submission
            client = make_client(uri)
            exp_id = experiment_id(client, config.tracking.experiment, uri)
            tags = {"sweep_id": sweep_id, "kind": "sweep", "overrides": overrides[:5000]}
            run = client.create_run(exp_id, run_name=f"sweep-{sweep_id}", tags=tags)
        except Exception as err:  # any failure to reach MLflow: say so, then go on without
            log.warning(
                "sweep %s: no parent MLflow run (%s); each cell logs its own run, tagged "
                "sweep_id=%s but not nested under a parent",
                sweep_id,
                describe(err),
                sweep_id,
            )
            return
        self.client, self.run_id = client, run.info.run_id
        os.environ[PARENT_ENV] = self.run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.client is None or self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status="FINISHED")
        except Exception as err:
            from alignment.tracking.remote import describe

            log.warning("sweep parent run %s left RUNNING: %s", self.run_id, describe(err))
