"""Cluster sweeps end to end: the launcher configs, then submitit and hydra-submitit-launcher
against the real single-node Slurm of scripts/slurm-local.sh (marker `slurm`).

The config tests need no cluster and run in the fast suite. Each Slurm test uses its own
submitit folder: job ids restart at 1 whenever the cluster's state is purged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

submitit = pytest.importorskip(
    "submitit", reason="needs the cluster extra: pip install -e .[cluster]"
)

ROOT = Path(__file__).resolve().parents[2]
# A developer's git-ignored conf/local/ must not change what these tests compose; on a fresh
# clone there is none, and `~local` would then fail.
NO_LOCAL = ["~local"] if (ROOT / "conf" / "local" / "default.yaml").is_file() else []
APP = Path(__file__).resolve().parent / "app" / "my_app.py"


# --- launcher configs (no cluster) -----------------------------------------------------------


def _compose(conf_dir: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("launcher", "target"),
    [(None, "BasicLauncher"), ("slurm", "SlurmLauncher"), ("local", "LocalLauncher")],
)
def test_launcher_configs_compose(launcher: str | None, target: str) -> None:
    # ~local: a developer's conf/local/default.yaml must not change what is tested here.
    overrides = ["model=tiny", *NO_LOCAL] + ([f"hydra/launcher={launcher}"] if launcher else [])
    cfg = _compose(ROOT / "conf", overrides)
    assert cfg.hydra.launcher._target_.rsplit(".", 1)[1] == target  # basic stays the default
    if launcher:
        params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        assert params["submitit_folder"].endswith("/.submitit/%j")


def test_slurm_launcher_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNMENT_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("ALIGNMENT_SLURM_GPUS", "2")
    cfg = _compose(ROOT / "conf", ["model=tiny", *NO_LOCAL, "hydra/launcher=slurm"])
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (params["partition"], params["gpus_per_node"]) == ("gpu", 2)
    assert params["max_num_timeout"] >= 1  # timed-out tasks are requeued


def test_local_example_composes(tmp_path: Path) -> None:
    """conf/local.example/default.yaml, copied to conf/local/, switches sweeps to Slurm."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    shutil.copy(ROOT / "conf" / "local.example" / "default.yaml", conf / "local" / "default.yaml")
    launcher = _compose(conf, ["model=tiny"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu"


# --- the cluster -----------------------------------------------------------------------------


def _add(a: int, b: int) -> int:
    return a + b


class _StartCounter(submitit.helpers.Checkpointable):
    """Outlives its time limit on the first start; returns how many times it started.

    Subclassing Checkpointable gives it the `checkpoint` method that submitit 1.5.4 needs to
    requeue it on the pre-timeout signal (`__submitit_checkpoint__` alone is not enough).
    """

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self) -> int:
        with self.log.open("a") as f:
            f.write(f"start {os.environ.get('SLURM_JOB_ID')}\n")
        starts = len(self.log.read_text().splitlines())
        if starts == 1:
            time.sleep(600)  # interrupted by USR2: submitit checkpoints and requeues the job
        return starts


def _executor(folder: Path, **params):
    import cloudpickle

    # Jobs unpickle this module's functions by value: the job's python cannot import a test file.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    init = {k: params.pop(k) for k in list(params) if k == "slurm_max_num_timeout"}
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", **init)
    executor.update_parameters(**params)
    return executor


def _result(job, timeout_s: float):
    """job.result(), failing instead of hanging when the job does not end in time."""
    deadline = time.monotonic() + timeout_s
    while not job.done():
        assert time.monotonic() < deadline, (
            f"job {job.job_id} still {job.state} after {timeout_s} s"
        )
        time.sleep(1)
    return job.result()


def _sacct(job_id: str, *flags: str, expect: int = 1) -> list[tuple[str, str]]:
    """(job id, state) records of job_id (arrays: one per task) once `expect` have ended."""
    running = {"PENDING", "RUNNING", "COMPLETING", "SUSPENDED"}
    for _ in range(60):  # the controller hands finished jobs to slurmdbd within moments
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State", *flags],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        records = [tuple(line.split("|")) for line in out.splitlines() if line]
        if len(records) >= expect and not running & {state for _, state in records}:
            return records
        time.sleep(0.5)
    raise AssertionError(f"sacct never showed job {job_id} ended: {records}")


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_submitit_job_returns_its_value(tmp_path: Path) -> None:
    job = _executor(tmp_path, timeout_min=5).submit(_add, 2, 3)
    assert _result(job, timeout_s=120) == 5
    assert _sacct(job.job_id) == [(job.job_id, "COMPLETED")]


def _multirun(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(APP), "-m", "hydra/launcher=submitit_slurm"]
    cmd += [f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.launcher.timeout_min=5", *overrides]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_multirun_is_one_job_array(tmp_path: Path) -> None:
    run = _multirun(tmp_path, "x=1,2,3")
    assert run.returncode == 0, run.stderr
    outputs = sorted((tmp_path / "sweep").glob("*/result.json"))
    records = [json.loads(p.read_text()) for p in outputs]
    assert len({p.parent for p in outputs}) == 3  # one output dir per task
    assert sorted(r["x"] for r in records) == [1, 2, 3]
    (array,) = {r["array_job_id"] for r in records}  # one sbatch for the whole sweep
    assert sorted(r["array_task_id"] for r in records) == ["0", "1", "2"]
    tasks = [f"{array}_{i}" for i in range(3)]
    assert sorted(_sacct(array, expect=3)) == [(t, "COMPLETED") for t in tasks]


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_failing_task_fails_the_launch(tmp_path: Path) -> None:
    run = _multirun(tmp_path, "x=7,8", "fail=true")  # two tasks: submitit sends one alone unarrayed
    assert run.returncode == 1
    assert "asked to fail (x=7)" in run.stderr
    outputs = (tmp_path / "sweep").glob("*/result.json")
    (array,) = {json.loads(p.read_text())["array_job_id"] for p in outputs}
    # The exception is pickled as the task's result: Slurm itself saw the tasks end normally.
    assert sorted(_sacct(array, expect=2)) == [(f"{array}_{i}", "COMPLETED") for i in (0, 1)]


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_timed_out_checkpointable_job_is_requeued(tmp_path: Path) -> None:
    # Slurm checks time limits every 30 s and signals when fewer than signal_delay_s + 30 s are
    # left: with 1 minute and 10 s, USR2 comes 20-50 s after the start, the kill only at 60 s.
    executor = _executor(tmp_path, timeout_min=1, slurm_signal_delay_s=10, slurm_max_num_timeout=3)
    log = tmp_path / "starts.log"
    job = executor.submit(_StartCounter(log))
    assert _result(job, timeout_s=240) == 2
    assert log.read_text().splitlines() == [f"start {job.job_id}"] * 2
    states = [state for _, state in _sacct(job.job_id, "--duplicates", expect=2)]
    assert states == ["REQUEUED", "COMPLETED"]
