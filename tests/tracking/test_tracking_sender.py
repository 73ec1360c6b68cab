"""Tracker + sender against a real MLflow sqlite store: order, original steps and timestamps,
idempotent replay, bounded flush on a dead server, one run per journal, rejections reported,
earlier attempts closed, and no secret in the journal file."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from alignment.config import TrackingConfig
from alignment.tracking import JOURNAL_FILE, RUN_ID_FILE, Journal, RunDirInUse, Tracker
from alignment.tracking.provenance import Owner, this_process
from alignment.tracking.remote import find_or_create_run
from alignment.tracking.sync import sync
from tests.tracking.conftest import free_port, journal_points, mlflow_points


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory) -> str:
    """One store for the module (creating an MLflow sqlite schema takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


@pytest.fixture
def db(shared_db) -> str:
    return shared_db


@pytest.fixture
def exp(request) -> str:
    """An experiment of the test's own in the shared store."""
    return request.node.name


@pytest.fixture
def cfg(exp):
    def make(uri: str, **kw) -> TrackingConfig:
        return TrackingConfig(uri=uri, experiment=exp, **kw)

    return make


def _run(tracker: Tracker, steps: int = 5) -> None:
    tracker.start({"lr": "0.1", "nested.beta": "2"}, {"method": "dpo"}, "run-a")
    for step in range(1, steps + 1):
        tracker.log_metrics({"train/loss": 1.0 / step, "train/acc": step / 10}, step=step)
        time.sleep(0.002)  # distinct timestamps, so order is visible in MLflow


def test_replay_keeps_order_steps_and_timestamps(tmp_path, db, cfg):
    tracker = Tracker(cfg(db), tmp_path / "run")
    _run(tracker)
    tracker.log_metrics({"train/loss": float("nan")}, step=6)
    (tmp_path / "run" / "notes.txt").write_text("hello")
    tracker.log_artifact(tmp_path / "run" / "notes.txt")
    tracker.set_tags({"stage": "done"})
    assert tracker.end("FINISHED") == 0
    run_id = (tmp_path / "run" / RUN_ID_FILE).read_text()
    client = MlflowClient(db)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run-a"
    assert run.data.params == {"lr": "0.1", "nested.beta": "2"}
    assert run.data.tags["method"] == "dpo" and run.data.tags["stage"] == "done"
    sent = {(k, s): (ts, v) for k, s, ts, v in journal_points(tmp_path / "run")}
    for key in ("train/loss", "train/acc"):
        history = client.get_metric_history(run_id, key)
        got = [(m.step, m.timestamp) for m in history]
        want = sorted((s, ts) for (k, s), (ts, _) in sent.items() if k == key)
        assert sorted(got) == want  # original steps and timestamps, once each
        for m in history:
            value = sent[(key, m.step)][1]
            assert (m.value != m.value) if value is None else m.value == value
    assert [a.path for a in client.list_artifacts(run_id)] == ["notes.txt"]


def test_replay_after_a_crash_before_the_ack_logs_nothing_twice(tmp_path, db, cfg, exp):
    """Every record sent but (as after a crash between send and ack) not marked sent: replaying
    all of it, twice, leaves MLflow's histories as they were."""
    tracker = Tracker(cfg(db), tmp_path / "run")
    _run(tracker, steps=20)
    assert tracker.end() == 0
    client = MlflowClient(db)
    run_id = tracker.run_id
    before = sorted(mlflow_points(client, run_id))
    assert len(before) == 40
    j = Journal(tmp_path / "run")
    j._db.execute("UPDATE records SET state = 'inflight' WHERE state = 'sent' AND kind != 'run'")
    assert sync(tmp_path / "run") == 0
    assert sync(tmp_path / "run") == 0  # nothing left: sends nothing
    assert sorted(mlflow_points(client, run_id)) == before
    assert len(client.search_runs([client.get_experiment_by_name(exp).experiment_id])) == 1


def test_dead_server_never_blocks_and_flush_is_bounded(tmp_path, db, caplog, cfg):
    """Nothing listens on the port: start() and every log call return, end() gives up after
    the flush budget with every record kept, says how to replay, and sync sends them all."""
    caplog.set_level(logging.INFO)
    uri = f"http://127.0.0.1:{free_port()}"
    tracker = Tracker(cfg(uri, flush_timeout_s=0.5), tmp_path / "run")
    _run(tracker)
    assert tracker.run_id is None and not (tmp_path / "run" / RUN_ID_FILE).exists()
    unsent = tracker.end()
    assert unsent == 1 + 2 + 10 + 1 + 1  # run, 2 params, 10 points, "attempts" tag, status
    assert tracker.sender.outage_waited >= 0.5
    text = caplog.text
    assert text.count("does not answer (connection refused)") == 1
    assert f"python -m alignment.tracking sync {tmp_path / 'run'}" in text
    assert "Traceback" not in text
    assert sync(tmp_path / "run", uri=db) == 0
    client = MlflowClient(db)
    run_id = (tmp_path / "run" / RUN_ID_FILE).read_text()
    assert len(client.get_metric_history(run_id, "train/loss")) == 5
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_run_is_created_once_even_if_its_id_was_never_recorded(tmp_path, db, cfg, exp):
    """A sender killed between create_run and writing the id: the next one finds the run by
    the journal id tag instead of creating a second."""
    tracker = Tracker(cfg("http://127.0.0.1:9", flush_timeout_s=0), tmp_path / "run")
    _run(tracker, steps=2)
    tracker.end()
    j = Journal(tmp_path / "run")
    client = MlflowClient(db)
    first = find_or_create_run(client, db, j.journal_id, exp, "run-a", {}, 0)
    assert sync(tmp_path / "run", uri=db) == 0
    assert j.run_id == first
    runs = client.search_runs([client.get_experiment_by_name(exp).experiment_id])
    assert [r.info.run_id for r in runs] == [first]


def test_param_conflict_becomes_a_tag_and_rejections_are_counted(tmp_path, db, caplog, cfg):
    """A re-evaluation with another setting: the param keeps its first value, the new one is a
    tag. An artifact whose file is gone is rejected: counted, never shown as sent."""
    tracker = Tracker(cfg(db), tmp_path / "run")
    _run(tracker, steps=1)
    tracker.log_params({"eval/gamma": "0.5"}, tags_on_conflict=True)
    tracker.flush(30)
    tracker.log_params({"eval/gamma": "0.7"}, tags_on_conflict=True)
    gone = tmp_path / "run" / "gone.txt"
    gone.write_text("x")
    tracker.log_artifact(gone)
    gone.unlink()
    assert tracker.end() == 0
    run = MlflowClient(db).get_run(tracker.run_id)
    assert run.data.params["eval/gamma"] == "0.5" and run.data.tags["eval/gamma"] == "0.7"
    assert Journal(tmp_path / "run").counts()["failed"] == 1
    assert "MLflow rejected 1 records" in caplog.text
    assert sync(tmp_path / "run") == 1  # still not in MLflow: sync says so


def test_rerun_marks_a_dead_attempt_killed_at_its_step(tmp_path, db, cfg):
    tracker = Tracker(cfg(db), tmp_path / "run")
    _run(tracker, steps=3)
    tracker.flush(30)
    tracker.sender.stop()  # as if killed: no end(), no status
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True).stdout  # fmt: skip
    j = Journal(tmp_path / "run")
    j.update_attempt(1, pid=int(dead))
    again = Tracker(cfg(db), tmp_path / "run")
    again.start({}, {}, "run-a")
    assert again.resumed and again.attempt == 2 and again.run_id == tracker.run_id
    again.flush(30)
    run = MlflowClient(db).get_run(again.run_id)
    assert run.data.tags["killed_at_step"] == "3" and run.info.status == "RUNNING"
    again.end()
    assert MlflowClient(db).get_run(again.run_id).info.status == "FINISHED"


def test_a_live_owner_keeps_the_run_directory(tmp_path, db, cfg):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        j = Journal(tmp_path / "run")
        me = this_process()
        from alignment.tracking.provenance import _start_mark

        j.begin_attempt(Owner(sleeper.pid, me.host, _start_mark(sleeper.pid)), "own")
        with pytest.raises(RunDirInUse, match=f"pid {sleeper.pid}"):
            Tracker(cfg(db), tmp_path / "run").start({}, {}, "x")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_no_secret_reaches_the_journal_file(tmp_path, db, monkeypatch, cfg):
    secret = "sk-journal-secret-9876"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    tracker = Tracker(cfg(db, tags={"note": f"key {secret}"}), tmp_path / "run")
    tracker.start({"judge.endpoint": f"https://u:{secret}@host/v1"}, {"t": secret}, f"r-{secret}")
    tracker.set_tags({"x": secret})
    tracker.log_params({"y": secret})
    tracker.end()
    for path in (tmp_path / "run").iterdir():
        assert secret.encode() not in path.read_bytes(), path
    run = MlflowClient(db).get_run(tracker.run_id)
    assert secret not in str([run.data.params, run.data.tags, run.info.run_name])
    assert (tmp_path / "run" / JOURNAL_FILE).is_file()


def test_a_server_that_does_not_know_the_run_gets_nothing_marked_rejected(tmp_path, db, cfg):
    """Replaying into another store (a moved server, a wiped database): the records stay
    unsent, never "rejected", and go to the run's own store afterwards."""
    tracker = Tracker(cfg(db), tmp_path / "run")
    _run(tracker, steps=2)
    assert tracker.end() == 0
    j = Journal(tmp_path / "run")
    j._db.execute("UPDATE records SET state = 'pending' WHERE kind = 'metric'")
    other = f"sqlite:///{tmp_path}/other.db"
    assert sync(tmp_path / "run", uri=other, timeout=1) == 4
    assert j.counts().get("failed", 0) == 0 and j.unsent() == 4
    assert sync(tmp_path / "run", uri=db) == 0
    assert len(MlflowClient(db).get_metric_history(tracker.run_id, "train/loss")) == 2


def test_experiment_id_creates_the_experiment_beside_a_sqlite_store(tmp_path, db, cfg, exp):
    """For the sweep's parent run (alignment/config/sweep.py), which needs the id at once."""
    tracker = Tracker(cfg(db), tmp_path / "sweep")
    exp_id = tracker.experiment_id()
    assert tracker.experiment_id() == exp_id
    experiment = MlflowClient(db).get_experiment(exp_id)
    assert experiment.name == exp
    store_dir = db.removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert experiment.artifact_location == f"file://{store_dir}/mlartifacts"
