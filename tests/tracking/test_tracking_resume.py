"""kill -9 of train.py, then the same command: one MLflow run in which every (key, step) appears
once, the killed attempt marked KILLED at the step it reached, and train_runtime covering both
attempts. Killed after a checkpoint (resumes from it) and before any (restarts at step 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from alignment.tracking import Journal
from tests.conftest import REPO, run_train
from tests.tracking.conftest import Server, free_port, mlflow_points
from tests.tracking.test_tracking_outage import _assert_exactly_once, _max_step

pytestmark = pytest.mark.slow
STEPS = 20
ARGS = [
    "model=tiny",
    "method=dpo",
    f"train.max_steps={STEPS}",
    "train.batch_size=2",
    "train.samples=0",
    "train.logging_steps=1",
    "tracking.experiment=resume",
]


def _start_and_kill(run_dir, cache_dir, args: list[str], ready) -> None:
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not ready():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "DONE").exists()


@pytest.mark.parametrize("save_steps", [5, 1000], ids=["after_checkpoint", "before_checkpoint"])
def test_kill9_and_rerun_logs_every_step_once(tmp_path, cache_dir, save_steps):
    run_dir, db = tmp_path / "run", f"sqlite:///{tmp_path}/m.db"
    args = [*ARGS, f"train.save_steps={save_steps}", f"tracking.uri={db}"]
    ckpt = run_dir / "checkpoints" / "checkpoint-10" / "trainer_state.json"
    if save_steps == 5:  # killed past checkpoint-10, with steps after it logged
        ready = lambda: ckpt.is_file() and _max_step(run_dir, "'pending', 'sent'") >= 12  # noqa: E731
    else:  # no checkpoint is ever written before step 20
        ready = lambda: _max_step(run_dir, "'pending', 'sent'") >= 4  # noqa: E731
    _start_and_kill(run_dir, cache_dir, args, ready)
    (first,) = Journal(run_dir).attempts()
    reached = first.last_step

    again = run_train(args, run_dir, cache_dir)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "resuming MLflow run" in out
    assert f"marked KILLED at step {reached}" in out
    restart = 10 if save_steps == 5 else 0
    assert ("resuming from" in out) == (restart > 0)

    client = MlflowClient(db)
    run_id = (run_dir / "mlflow_run_id").read_text()
    logged = _assert_exactly_once(client, run_id, run_dir)
    for key in ("train/loss", "train/lr", "train/grad_norm", "train/rewards/accuracy"):
        assert sorted(s for k, s, _, _ in logged if k == key) == list(range(1, STEPS + 1)), key
    assert [s for k, s, _, _ in logged if k == "data/train_examples"] == [0]
    assert [s for k, s, _, _ in logged if k == "train/train_runtime"] == [STEPS]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["killed_at_step"] == str(reached) and run.data.tags["attempts"] == "2"
    assert len(client.search_runs([run.info.experiment_id])) == 1

    # train_runtime: the killed attempt's training time (train begin -> its last record) plus
    # the resumed attempt's, which the Trainer measures itself.
    a1, a2 = Journal(run_dir).attempts()
    killed_span = a1.last_seen - a1.train_begin
    resumed_span = a2.train_end - a2.train_begin
    runtime = run.data.metrics["train/train_runtime"]
    assert killed_span > 0 and runtime > killed_span
    assert abs(runtime - (killed_span + resumed_span)) < 1.0

    # The documented replay command, as written: everything is already there.
    sync = subprocess.run(
        [sys.executable, "-m", "alignment.tracking", "sync", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert sync.returncode == 0 and "nothing to send" in sync.stderr
    assert len(mlflow_points(client, run_id)) == len(logged)


def test_kill9_while_mlflow_is_down_then_rerun_with_it_up(tmp_path, cache_dir):
    """Attempt 1 never reaches MLflow (nothing listens yet) and is killed past checkpoint-10;
    attempt 2 runs with the server up. Its run is created from attempt 1's journal, attempt 1's
    unsent points after step 10 are replaced by attempt 2's, and every step is there once."""
    server = Server(tmp_path / "study", free_port())
    run_dir = tmp_path / "run"
    args = [*ARGS, "train.save_steps=5", f"tracking.uri={server.uri}"]
    ckpt = run_dir / "checkpoints" / "checkpoint-10" / "trainer_state.json"
    ready = lambda: ckpt.is_file() and _max_step(run_dir, "'pending'") >= 12  # noqa: E731
    _start_and_kill(run_dir, cache_dir, args, ready)
    (first,) = Journal(run_dir).attempts()
    assert not (run_dir / "mlflow_run_id").exists()
    server.start()
    try:
        again = run_train(args, run_dir, cache_dir)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        client = MlflowClient(server.uri)
        run_id = (run_dir / "mlflow_run_id").read_text()
        logged = _assert_exactly_once(client, run_id, run_dir)
        run = client.get_run(run_id)
    finally:
        server.stop()
    journal = Journal(run_dir)
    a1, a2 = journal.attempts()
    replaced = journal._db.execute(
        "SELECT COUNT(DISTINCT step) FROM records WHERE note LIKE 'after checkpoint step 10%'"
    ).fetchone()[0]
    assert replaced == first.last_step - 10  # steps 11..reached, logged again by attempt 2
    after = [ts for k, s, ts, _ in logged if k == "train/loss" and s > 10]
    assert len(after) == STEPS - 10 and min(after) > a2.begun * 1000
    assert sorted(s for k, s, _, _ in logged if k == "train/loss") == list(range(1, STEPS + 1))
    assert run.info.status == "FINISHED" and run.data.tags["killed_at_step"] == str(a1.last_step)
    print(f"resume with MLflow down first: killed at {a1.last_step}, {replaced} steps replaced")
