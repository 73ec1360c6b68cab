"""kill -9 of a local training midway, then the same command again: it resumes from its last
complete checkpoint into the same MLflow run and ends where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from tests.conftest import REPO, run_train

ARGS = [
    "model=tiny",
    "method=dpo",
    "train.max_steps=40",
    "train.save_steps=5",
    "train.batch_size=2",
    "train.samples=0",
    "tracking.experiment=resume",
]


def _final_loss(client, run_id):
    history = client.get_metric_history(run_id, "train/loss")
    return max(history, key=lambda m: (m.step, m.timestamp))


def test_kill9_then_rerun_resumes_same_run(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    ref = run_train([*ARGS, f"tracking.uri={db}", "tag=uninterrupted"], tmp_path / "ref", cache_dir)
    assert ref.returncode == 0, ref.stderr[-2000:]

    run_dir = tmp_path / "killed"
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "train.py", *ARGS, f"tracking.uri={db}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    ckpt = run_dir / "checkpoints" / "checkpoint-10" / "trainer_state.json"
    # the run id file appears once the background sender has created the MLflow run
    while not (ckpt.is_file() and (run_dir / "mlflow_run_id").is_file()):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "DONE").exists()
    run_id = (run_dir / "mlflow_run_id").read_text()

    again = run_train([*ARGS, f"tracking.uri={db}"], run_dir, cache_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    log = again.stdout + again.stderr
    assert "resuming from" in log and "checkpoint-" in log and "resuming MLflow run" in log
    assert (run_dir / "mlflow_run_id").read_text() == run_id

    client = MlflowClient(db)
    exp = client.get_experiment_by_name("resume")
    assert len(client.search_runs([exp.experiment_id])) == 2  # the reference run and this one
    assert client.get_run(run_id).info.status == "FINISHED"
    ref_id = (tmp_path / "ref" / "mlflow_run_id").read_text()
    resumed, uninterrupted = _final_loss(client, run_id), _final_loss(client, ref_id)
    assert resumed.step == uninterrupted.step == 40
    assert abs(resumed.value - uninterrupted.value) < 1e-5
