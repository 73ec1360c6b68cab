"""MLflow tracking: one run per training job, resumable, with secrets kept out.

A run's id is stored in its output directory (`mlflow_run_id`), so a requeued or re-launched job
logs into the same run. The client API is used directly (no global active run), so the library
never depends on MLflow's process-wide state.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from transformers import TrainerCallback

from alignment.config import TrackingConfig

log = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run_id"
_SECRET_NAME = re.compile(r"(?i)(token|secret|passw|api[_-]?key|credential|auth)")
_URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@")


def resolve_uri(uri: str) -> str:
    """sqlite URIs with a relative path resolve against the launch directory, so every job of a
    sweep (whatever its cwd) writes to the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def redact(value: str) -> str:
    """Masks credentials in URIs and the value of any secret-looking environment variable."""
    value = _URI_USERINFO.sub(r"\g<scheme>***@", value)
    for name, secret in os.environ.items():
        if len(secret) >= 6 and _SECRET_NAME.search(name) and secret in value:
            value = value.replace(secret, "***")
    return value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        elif _SECRET_NAME.search(str(key)):
            flat[name] = "***"
        else:
            flat[name] = redact(str(value))[:6000]
    return flat


def git_state(repo: Path) -> tuple[str, str]:
    """(commit sha, "true"/"false" dirty) of the code that ran, or ("unknown", "unknown")."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha, str(bool(dirty)).lower()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", "unknown"


class Tracker:
    """An MLflow run bound to an output directory."""

    def __init__(self, cfg: TrackingConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.uri = resolve_uri(cfg.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id: str | None = None
        self.resumed = False

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.cfg.experiment)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
        try:
            return self.client.create_experiment(self.cfg.experiment, artifact_location=location)
        except Exception:  # created concurrently by another job of the sweep
            return self.client.get_experiment_by_name(self.cfg.experiment).experiment_id

    def start(self, params: dict[str, str], tags: dict[str, str], run_name: str) -> str:
        id_file = self.run_dir / RUN_ID_FILE
        if id_file.is_file():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            self.resumed = True
            log.info("resuming MLflow run %s", self.run_id)
            return self.run_id
        all_tags = {k: redact(str(v)) for k, v in {**tags, **self.cfg.tags}.items()}
        # Set by the sweep's parent-run callback (alignment/config/sweep.py) before fan-out.
        parent, sweep = (
            os.environ.get("ALIGNMENT_PARENT_RUN_ID"),
            os.environ.get("ALIGNMENT_SWEEP_ID"),
        )
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        if sweep:
            all_tags["sweep_id"] = sweep
        run = self.client.create_run(self.experiment_id(), tags=all_tags, run_name=redact(run_name))
        self.run_id = run.info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(self.run_id)
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(
            self.run_id, tags=[RunTag(k, redact(str(v))) for k, v in tags.items()]
        )

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)


class MlflowCallback(TrainerCallback):
    """Sends every Trainer log line to MLflow as namespaced step metrics (train/..., eval/...)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {}
        for key, value in logs.items():
            if not isinstance(value, (int, float)):
                continue
            if key.startswith("eval_"):
                metrics["eval/" + key[len("eval_") :]] = value
            elif key == "learning_rate":
                metrics["train/lr"] = value
            else:
                metrics["train/" + key] = value
        self.tracker.log_metrics(metrics, step=state.global_step)
