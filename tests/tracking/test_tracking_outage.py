"""train.py against a real `mlflow server` that dies: killed and restarted mid-run (nothing lost,
nothing twice), and never there at all (training starts at once; `sync` replays it later)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from alignment.tracking import Journal
from tests.conftest import REPO, run_train
from tests.tracking.conftest import Server, free_port, journal_points, mlflow_points

pytestmark = pytest.mark.slow
TINY = [
    "model=tiny",
    "method=dpo",
    "train.batch_size=2",
    "train.samples=0",
    "train.logging_steps=1",
    "train.save_steps=1000",
    "tracking.experiment=outage",
]


def _max_step(run_dir: Path, states: str) -> int:
    """Highest train/loss step in the journal among records in `states` (0 before any)."""
    path = run_dir / "tracking_journal.db"
    if not path.is_file():
        return 0
    db = sqlite3.connect(path, timeout=30)
    try:
        row = db.execute(
            f"SELECT MAX(step) FROM records WHERE key = 'train/loss' AND state IN ({states})"
        ).fetchone()
        return row[0] or 0
    except sqlite3.OperationalError:  # schema not there yet
        return 0
    finally:
        db.close()


def _wait(proc: subprocess.Popen, what: str, cond, limit_s: float = 600) -> None:
    """Poll `cond` while training runs (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        assert proc.poll() is None, f"training ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {limit_s} s"
        time.sleep(0.05)


def _assert_exactly_once(client: MlflowClient, run_id: str, run_dir: Path) -> list:
    """Every live journal point is in MLflow once, at its original step and timestamp."""
    logged = journal_points(run_dir)
    stored = mlflow_points(client, run_id)
    twice = [p for p, n in Counter((k, s) for k, s, _ in stored).items() if n > 1]
    assert twice == [], f"{len(twice)} (key, step) logged more than once: {twice[:5]}"
    assert sorted(stored) == sorted((k, s, ts) for k, s, ts, _ in logged)
    journal = Journal(run_dir)
    assert journal.unsent() == 0 and journal.counts().get("failed", 0) == 0
    return logged


def test_server_killed_and_restarted_mid_run_loses_nothing(tmp_path, cache_dir, mlflow_server):
    steps, run_dir = 300, tmp_path / "run"
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "train.py", *TINY, f"train.max_steps={steps}"]
    cmd += [f"tracking.uri={mlflow_server.uri}", "tracking.flush_timeout_s=600"]
    log = (tmp_path / "train.out").open("w")
    proc = subprocess.Popen(
        [*cmd, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    try:
        _wait(proc, "10 steps in MLflow", lambda: _max_step(run_dir, "'sent'") >= 10)
        mlflow_server.kill()
        killed_ms, at_kill = time.time() * 1000, _max_step(run_dir, "'pending', 'sent'")
        # Training goes on while nothing answers: 20 more steps journaled.
        _wait(proc, "progress during the outage", lambda: _max_step(run_dir, "'pending'") > 0)
        _wait(
            proc,
            "20 steps during the outage",
            lambda: _max_step(run_dir, "'pending'") >= at_kill + 20,
        )
        mlflow_server.start()
        back_ms = time.time() * 1000
        assert proc.wait(timeout=900) == 0
    finally:
        proc.kill()
        log.close()
    out = (tmp_path / "train.out").read_text()
    assert out.count("does not answer") == 1 and "answers again" in out
    assert "Traceback" not in out and "every record is in MLflow" in out
    client = MlflowClient(mlflow_server.uri)
    run_id = (run_dir / "mlflow_run_id").read_text()
    logged = _assert_exactly_once(client, run_id, run_dir)
    loss_steps = sorted(s for k, s, _, _ in logged if k == "train/loss")
    assert loss_steps == list(range(1, steps + 1))
    during = [p for p in logged if killed_ms < p[2] < back_ms]
    assert len(during) >= 20 * 13  # >= 13 keys per step for the 20+ steps of the outage
    assert client.get_run(run_id).info.status == "FINISHED"
    print(f"outage: {len(logged)} points, {len(during)} logged while the server was down")


def test_dead_uri_trains_at_once_and_sync_replays_it_later(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    args = [*TINY, "train.max_steps=5", "tracking.uri=http://127.0.0.1:9"]
    proc = run_train([*args, "tracking.flush_timeout_s=1"], run_dir, cache_dir)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and out.count("does not answer (connection refused)") == 1
    assert f"Send them later: python -m alignment.tracking sync {run_dir}" in out
    assert (run_dir / "DONE").is_file() and not (run_dir / "mlflow_run_id").exists()
    journal = Journal(run_dir)
    unsent = journal.unsent()
    assert unsent > 5 * 13 and journal.counts().get("sent", 0) == 0
    assert f"{unsent} records are not in MLflow yet" in out

    server = Server(tmp_path / "study", free_port())
    server.start()
    try:
        sync = [sys.executable, "-m", "alignment.tracking", "sync", str(run_dir)]
        first = subprocess.run(
            [*sync, "--uri", server.uri], cwd=REPO, capture_output=True, text=True
        )
        assert first.returncode == 0, first.stderr
        assert f"sent {unsent} of {unsent} records" in first.stderr
        client = MlflowClient(server.uri)
        run_id = (run_dir / "mlflow_run_id").read_text()
        logged = _assert_exactly_once(client, run_id, run_dir)
        assert sorted(s for k, s, _, _ in logged if k == "train/loss") == [1, 2, 3, 4, 5]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params["model.name"] == "tiny"
        names = {a.path for a in client.list_artifacts(run_id)}
        assert {"adapter", "summary.json", "resolved_config.yaml"} <= names
        before = sorted(mlflow_points(client, run_id))
        again = subprocess.run(
            [*sync, "--uri", server.uri], cwd=REPO, capture_output=True, text=True
        )
        assert again.returncode == 0 and "nothing to send" in again.stderr
        assert sorted(mlflow_points(client, run_id)) == before
    finally:
        server.stop()
