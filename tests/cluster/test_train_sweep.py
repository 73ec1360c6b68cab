"""train.py on the local Slurm cluster (markers `slurm` and `slow`): a 2x2 sweep is one job
array logging to one `mlflow server`, and a preempted run is requeued and resumes.

The cluster comes from scripts/slurm-local.sh (fixture `slurm_cluster`), the tracking server
from scripts/mlflow-server.sh. Runs use model=tiny on CPU, one thread each.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

ROOT = Path(__file__).resolve().parents[2]
# A developer's git-ignored conf/local/ must not change what these tests compose; on a fresh
# clone there is none, and `~local` would then fail.
NO_LOCAL = ["~local"] if (ROOT / "conf" / "local" / "default.yaml").is_file() else []
MLFLOW_SERVER = ROOT / "scripts" / "mlflow-server.sh"
TINY = ["model=tiny", "train.samples=0", "train.torch_threads=1", *NO_LOCAL]


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of an `mlflow server` for this module's runs (the single writer of its database)."""
    study = tmp_path_factory.mktemp("study")
    env = {**os.environ, "MLFLOW_SERVER_WORKERS": "1"}  # starts faster; enough for 4 tasks
    start = subprocess.run(
        ["bash", str(MLFLOW_SERVER), "start", str(study)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert start.returncode == 0, start.stderr
    (uri,) = re.findall(r"^MLFLOW_TRACKING_URI=(\S+)$", start.stdout, re.M)
    yield uri
    subprocess.run(["bash", str(MLFLOW_SERVER), "stop", str(study)], check=True, timeout=60)


@pytest.fixture
def launch(tracking_uri: str) -> Iterator:
    """launch(sweep, *overrides): `train.py -m hydra/launcher=slurm tracking=server ...` in the
    background; whatever a failed test leaves running (launcher, Slurm jobs) is stopped."""
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(sweep: Path, *overrides: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=slurm"]
        cmd += ["tracking=server", f"hydra.sweep.dir={sweep}", "hydra.launcher.cpus_per_task=1"]
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(
            [*cmd, *TINY, *overrides],
            cwd=sweep.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append((proc, sweep))
        return proc

    yield start
    for proc, sweep in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            jobs = {name.split("_")[0] for name in _job_ids(sweep, array=False)}
            subprocess.run(["scancel", *jobs], check=False)


def _finish(proc: subprocess.Popen[str], timeout_s: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"train.py -m still running after {timeout_s} s") from None
    assert proc.returncode == 0, out[-4000:]
    return out


def _job_ids(sweep: Path, array: bool) -> list[str]:
    """Slurm job ids from submitit's folders: array tasks (`A_i`) or jobs and arrays (`A`)."""
    if not (sweep / ".submitit").is_dir():
        return []
    pattern = r"\d+_\d+" if array else r"\d+"
    return sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(pattern, p.name))


def _states(job_id: str, *flags: str, expect: int) -> list[str]:
    running = {"PENDING", "RUNNING", "COMPLETING", "SUSPENDED"}
    for _ in range(60):
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State", *flags],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if len(out) >= expect and not running & set(out):
            return out
        time.sleep(0.5)
    raise AssertionError(f"sacct never showed job {job_id} ended: {out}")


def _runs(uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id])


def test_two_by_two_sweep_is_one_array(tmp_path: Path, tracking_uri: str, launch) -> None:
    sweep = tmp_path / "sweep"
    proc = launch(
        sweep, "method=dpo,sft", "seed=0,1", "train.max_steps=2", "tracking.experiment=sweep2x2"
    )
    _finish(proc, timeout_s=900)

    tasks = _job_ids(sweep, array=True)
    arrays = {t.split("_")[0] for t in tasks}
    assert len(arrays) == 1 and len(tasks) == 4, tasks  # one sbatch, four array tasks
    assert _states(arrays.pop(), expect=4) == ["COMPLETED"] * 4
    assert len(list(sweep.glob("*/DONE"))) == 4  # each task in its own output dir

    all_runs = _runs(tracking_uri, "sweep2x2")
    (parent,) = [r for r in all_runs if r.data.tags.get("kind") == "sweep"]
    runs = [r for r in all_runs if r.data.tags.get("kind") != "sweep"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert {r.data.tags["sweep_id"] for r in runs} == {parent.data.tags["sweep_id"]}
    combos = sorted((r.data.tags["method"], r.data.tags["seed"]) for r in runs)
    assert combos == [("dpo", "0"), ("dpo", "1"), ("sft", "0"), ("sft", "1")]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert "train/loss" in run.data.metrics, sorted(run.data.metrics)


def test_preempted_run_is_requeued_and_resumes(tmp_path: Path, tracking_uri: str, launch) -> None:
    sweep = tmp_path / "sweep"
    proc = launch(
        sweep,
        "method=dpo",
        "train.max_steps=30",
        "train.save_steps=10",
        "tracking.experiment=requeue",
    )
    # Preempt (USR2, as Slurm sends before a time limit) once checkpoint-10 is complete: its
    # trainer_state.json is written last, and the next save is 10 steps away.
    deadline = time.monotonic() + 600
    while not list(sweep.glob("*/checkpoints/checkpoint-10/trainer_state.json")):
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint-10 after 600 s"
        time.sleep(0.2)
    (job_id,) = _job_ids(sweep, array=False)  # one task: submitit sends no array
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    _finish(proc, timeout_s=600)

    assert _states(job_id, "--duplicates", expect=2) == ["REQUEUED", "COMPLETED"]
    (log,) = sweep.glob("*/train.log")
    text = log.read_text()
    assert "resuming from" in text and "checkpoint-10" in text, text[-3000:]
    assert "resuming MLflow run" in text
    (run,) = [r for r in _runs(tracking_uri, "requeue") if r.data.tags.get("kind") != "sweep"]
    # the requeued task carried on the same run
    assert run.info.status == "FINISHED"

    # ...and ends where an uninterrupted run of the same cell ends.
    db = f"sqlite:///{tmp_path}/uninterrupted.db"
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        *TINY,
        "method=dpo",
        "train.max_steps=30",
        "train.save_steps=10",
        f"tracking.uri={db}",
        f"hydra.run.dir={tmp_path}/plain",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=900)
    from mlflow import MlflowClient

    plain_id = (tmp_path / "plain" / "mlflow_run_id").read_text()
    last = lambda client, rid: max(  # noqa: E731
        client.get_metric_history(rid, "train/loss"), key=lambda m: (m.step, m.timestamp)
    )
    resumed = last(MlflowClient(tracking_uri), run.info.run_id)
    plain = last(MlflowClient(db), plain_id)
    assert resumed.step == plain.step == 30
    assert abs(resumed.value - plain.value) < 1e-5


# --- multi-rank jobs (tasks_per_node=2: two processes, one torch.distributed job per cell) ----


def _metrics_once(uri: str, run, last_step: int) -> None:
    """One value per metric and step (rank 1 logs nothing of its own); only the Trainer's
    end-of-training summary repeats epoch and reference_forwards at the last step."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        repeated = {s: steps.count(s) for s in steps if steps.count(s) > 1}
        summary = key in ("train/epoch", "train/reference_forwards")
        assert repeated in (({}, {last_step: 2}) if summary else ({},)), (key, steps)


def test_two_task_cells_are_one_run_each(tmp_path: Path, tracking_uri: str, launch) -> None:
    """`python train.py -m hydra/launcher=slurm hydra.launcher.tasks_per_node=2 model=tiny
    method=dpo,cita` (README, slurm.yaml): each cell one 2-task job, one MLflow run each."""
    sweep = tmp_path / "sweep"
    proc = launch(
        sweep,
        "hydra.launcher.tasks_per_node=2",  # model=tiny comes with TINY
        "method=dpo,cita",
        "train.max_steps=3",
        "tracking.experiment=ranks2",
    )
    _finish(proc, timeout_s=900)

    tasks = _job_ids(sweep, array=True)
    arrays = {t.split("_")[0] for t in tasks}
    assert len(arrays) == 1 and len(tasks) == 2, tasks
    assert _states(arrays.pop(), expect=2) == ["COMPLETED"] * 2
    logs = [p.read_text() for p in sweep.glob("*/train.log")]
    assert len(logs) == 2 and all("rank 0 of 2 joined the gloo process group" in t for t in logs)
    assert len(list(sweep.glob("*/DONE"))) == 2
    runs = [r for r in _runs(tracking_uri, "ranks2") if r.data.tags.get("kind") != "sweep"]
    assert sorted(r.data.tags["method"] for r in runs) == ["cita", "dpo"]
    for run in runs:
        assert run.info.status == "FINISHED"
        _metrics_once(tracking_uri, run, last_step=3)
        assert "train/loss" in run.data.metrics


def test_two_task_job_is_requeued_and_resumes(tmp_path: Path, tracking_uri: str, launch) -> None:
    """USR2 to a 2-task job once checkpoint-5 is complete: rank 0 requeues it, both ranks start
    again, resume from the checkpoint into the same MLflow run, and end where an uninterrupted
    2-rank run (torchrun) of the same cell ends."""
    sweep = tmp_path / "sweep"
    cell = ["method=dpo", "train.batch_size=2", "train.max_steps=20", "train.save_steps=5"]
    proc = launch(sweep, "hydra.launcher.tasks_per_node=2", *cell, "tracking.experiment=requeue2")
    deadline = time.monotonic() + 600
    while not list(sweep.glob("*/checkpoints/checkpoint-5/trainer_state.json")):
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint-5 after 600 s"
        time.sleep(0.2)
    (job_id,) = _job_ids(sweep, array=False)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    _finish(proc, timeout_s=900)

    assert _states(job_id, "--duplicates", expect=2) == ["REQUEUED", "COMPLETED"]
    (log,) = sweep.glob("*/train.log")
    text = log.read_text()
    assert "resuming from" in text and "resuming MLflow run" in text, text[-3000:]
    (run,) = [r for r in _runs(tracking_uri, "requeue2") if r.data.tags.get("kind") != "sweep"]
    assert run.info.status == "FINISHED"

    db = f"sqlite:///{tmp_path}/uninterrupted.db"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(ROOT / "train.py"), *TINY, *cell]
    cmd += [f"tracking.uri={db}", f"hydra.run.dir={tmp_path}/plain"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=900)
    from mlflow import MlflowClient

    plain_id = (tmp_path / "plain" / "mlflow_run_id").read_text()
    last = lambda client, rid: max(  # noqa: E731
        client.get_metric_history(rid, "train/loss"), key=lambda m: (m.step, m.timestamp)
    )
    resumed = last(MlflowClient(tracking_uri), run.info.run_id)
    plain = last(MlflowClient(db), plain_id)
    assert resumed.step == plain.step == 20
    assert abs(resumed.value - plain.value) < 1e-5
