"""kill -9 of a MAC and of an AlignX-repro training midway, then the same command again: each
resumes from its last complete checkpoint into the same MLflow run(s) and ends where an
uninterrupted run ends (as tests/test_resume.py checks for the loss-only methods)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, run_train

pytestmark = pytest.mark.slow

COMMON = ["model=tiny", "train.max_steps=20", "train.save_steps=5", "train.batch_size=2"]
COMMON += ["train.samples=0", "tracking.experiment=resume"]
CASES = {
    "mac": (["method=mac", "method.layers=[1]"], "checkpoints"),
    "alignx": (
        ["method=alignx", "method.projector_steps=20", "method.router_steps=20"],
        "stage1/checkpoints",
    ),
}


def _final(client: MlflowClient, run_id: str, key: str = "train/loss"):
    return max(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))


def _loss_run(client: MlflowClient, run_id: str) -> str:
    """The run holding the training loss: the run itself, or AlignX's stage-1 child."""
    run = client.get_run(run_id)
    query = f"tags.mlflow.parentRunId = '{run_id}' and tags.alignx_stage = '1'"
    children = client.search_runs([run.info.experiment_id], query)
    return children[0].info.run_id if children else run_id


def _kill_at_checkpoint(args: list[str], run_dir: Path, cache: Path, ckpt_dir: str) -> None:
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    ckpt = run_dir / ckpt_dir / "checkpoint-10" / "trainer_state.json"
    # the run id file appears once the background sender has created the MLflow run
    while not (ckpt.is_file() and (run_dir / "mlflow_run_id").is_file()):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("method", sorted(CASES))
def test_kill9_then_rerun_resumes_the_same_runs(method, tmp_path, cache_dir):
    extra, ckpt_dir = CASES[method]
    db = f"sqlite:///{tmp_path}/m.db"
    args = [*COMMON, *extra, f"tracking.uri={db}"]
    ref = run_train([*args, "tag=uninterrupted"], tmp_path / "ref", cache_dir)
    assert ref.returncode == 0, ref.stderr[-2000:]

    run_dir = tmp_path / "killed"
    _kill_at_checkpoint(args, run_dir, cache_dir, ckpt_dir)
    assert not (run_dir / "DONE").exists()
    run_id = (run_dir / "mlflow_run_id").read_text()
    stage_id_file = run_dir / "stage1" / "mlflow_run_id"
    stage_id = stage_id_file.read_text() if stage_id_file.is_file() else None

    again = run_train(args, run_dir, cache_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    log = again.stdout + again.stderr
    assert "resuming from" in log and "resuming MLflow run" in log
    assert (run_dir / "mlflow_run_id").read_text() == run_id
    if stage_id is not None:
        assert stage_id_file.read_text() == stage_id  # the same nested stage-1 run

    client = MlflowClient(db)
    exp = client.get_experiment_by_name("resume")
    parents = [r for r in client.search_runs([exp.experiment_id]) if "kind" not in r.data.tags]
    assert len(parents) == 2  # the reference run and this one
    assert client.get_run(run_id).info.status == "FINISHED"
    ref_id = (tmp_path / "ref" / "mlflow_run_id").read_text()
    resumed = _final(client, _loss_run(client, run_id))
    uninterrupted = _final(client, _loss_run(client, ref_id))
    assert resumed.step == uninterrupted.step == 20
    assert abs(resumed.value - uninterrupted.value) < 1e-5
    if method == "alignx":
        key = "alignx/router_val_accuracy"
        assert _final(client, run_id, key).value == _final(client, ref_id, key).value
