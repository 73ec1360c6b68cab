"""A local multirun: one parent MLflow run tagged with the sweep id, the jobs nested under it."""

import os
import subprocess
import sys

from mlflow.tracking import MlflowClient

from tests.conftest import REPO


def test_multirun_children_nest_under_one_parent(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "model=tiny",
        "method=dpo,sft",
        "train.max_steps=1",
        "train.samples=0",
        f"tracking.uri={db}",
        "tracking.experiment=sweep",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("kind") != "sweep"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.data.tags["sweep_id"] == "sweep" and parent.info.status == "FINISHED"
    assert sorted(r.data.tags["method"] for r in children) == ["dpo", "sft"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["sweep_id"] == "sweep"


def test_a_dead_tracking_server_does_not_hold_up_a_sweep(tmp_path, monkeypatch, caplog):
    """The parent run is one short attempt: with nothing listening the sweep goes on (its cells
    journal their runs and send them later), tagged with the sweep id, and says so."""
    import time

    from omegaconf import OmegaConf

    from alignment.config.sweep import PARENT_ENV, SWEEP_ENV, SweepParentRun

    for name in (PARENT_ENV, SWEEP_ENV):
        monkeypatch.delenv(name, raising=False)
    config = OmegaConf.create(
        {
            "tracking": {"enabled": True, "uri": "http://127.0.0.1:9", "experiment": "x"},
            "hydra": {
                "launcher": {},
                "sweep": {"dir": str(tmp_path / "2026-12-01_sweep")},
                "overrides": {"task": ["method=dpo,sft"]},
            },
        }
    )
    start = time.monotonic()
    callback = SweepParentRun()
    callback.on_multirun_start(config)
    assert time.monotonic() - start < 60  # MLflow's own retries would take about 4 minutes
    assert os.environ[SWEEP_ENV] == "2026-12-01_sweep" and PARENT_ENV not in os.environ
    assert "no parent MLflow run (connection refused)" in caplog.text
    callback.on_multirun_end(config)  # nothing to end: no error
