"""train.py, python -m alignment.risk, scripts/plan_sweep.py --risk and a gated sweep, run the way
users run them (subprocesses), on model=tiny: what reaches MLflow, what the gate does, and the
one-line errors of bad input before any training step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from alignment.pipeline import run_training
from tests.conftest import REPO, compose_cfg, run_train

RISK_METRICS = ("risk/overlap", "risk/eps_hat", "risk/gamma_hat", "risk/rank", "risk/horizon")
REG = ("train/reg/fisher", "train/reg/task", "train/reg/e_rm", "train/reg/e_geo")


def run_module(args: list[str], cache, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory, cache_dir):
    """The README's command on model=tiny: risk=preflight regularizer=alignguard method=dpo."""
    tmp = tmp_path_factory.mktemp("risk_e2e")
    db = f"sqlite:///{tmp}/m.db"
    args = ["risk=preflight", "regularizer=alignguard", "method=dpo", "model=tiny"]
    args += ["train.max_steps=3", "train.samples=0", f"tracking.uri={db}"]
    proc = run_train(args, tmp / "run", cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(db)
    return client, client.get_run((tmp / "run" / "mlflow_run_id").read_text()), tmp / "run"


def test_preflight_metrics_figures_and_arrays_in_the_run(guarded_run):
    client, run, out = guarded_run
    metrics, rid = run.data.metrics, run.info.run_id
    assert all(k in metrics for k in RISK_METRICS), sorted(metrics)
    data = json.loads((out / "risk" / "preflight.json").read_text())
    for key in RISK_METRICS:
        assert metrics[key] == pytest.approx(data["metrics"][key])
    assert 0.0 <= metrics["risk/overlap"] <= 1.0 and metrics["risk/rank"] == data["rank"] >= 1
    assert ("risk/collapse_step" in metrics) == (data["collapse_step"] is not None)
    assert len(data["forecast"]["estimated_loss"]) == 2001 and data["samples"] == 128
    logged = {a.path for a in client.list_artifacts(rid, "risk")}
    assert logged == {"risk/forecast.png", "risk/sensitivity.png", "risk/preflight.json"}
    tags = run.data.tags
    assert tags["risk_gate"] == "off" and tags["risk_backend"] in ("vmap", "loop")
    assert tags["risk_warning"] == data["warning"] and run.info.status == "FINISHED"


def test_alignguard_terms_logged_every_step(guarded_run):
    client, run, _ = guarded_run
    for key in REG:
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2, 3], key
    fisher = [m.value for m in client.get_metric_history(run.info.run_id, "train/reg/fisher")]
    assert fisher[0] == 0.0 and fisher[-1] > 0.0  # 0 at the anchor, then the adapter moves


def test_gated_sweep_skips_the_collapsing_cell_and_trains_the_other(tmp_path, cache_dir):
    """risk.gate=skip over lr in {1e-4, 1e3}: the 1e3 cell's forecast collapses within its 2
    planned steps, so it ends before training (MLflow status KILLED, tag risk_gate=skipped, the
    forecast figure logged); the 1e-4 cell trains; the sweep exits 0."""
    db = f"sqlite:///{tmp_path}/m.db"
    proc = run_module(
        [
            "train.py", "-m", "model=tiny", "risk.gate=skip", "optimizer.lr=1e-4,1e3",
            "train.max_steps=2", "train.samples=0", f"tracking.uri={db}",
            "tracking.experiment=gated", f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("gated").experiment_id])
    cells = {r.data.params["optimizer.lr"]: r for r in runs if r.data.tags.get("kind") != "sweep"}
    skipped, trained = cells["1000.0"], cells["0.0001"]
    assert skipped.info.status == "KILLED" and skipped.data.tags["risk_gate"] == "skipped"
    assert (
        skipped.data.metrics["risk/collapse_step"] <= 2 and "train/loss" not in skipped.data.metrics
    )
    logged = {a.path for a in client.list_artifacts(skipped.info.run_id, "risk")}
    assert "risk/forecast.png" in logged
    assert trained.info.status == "FINISHED" and trained.data.tags["risk_gate"] == "passed"
    assert "risk/collapse_step" not in trained.data.metrics and "train/loss" in trained.data.metrics
    (skip_dir,) = (tmp_path / "sweep").glob("*optimizer.lr=1000.0*")
    assert json.loads((skip_dir / "DONE").read_text()) == {
        "final_loss": None,
        "risk_gate": "skipped",
    }
    assert not (skip_dir / "checkpoints").exists()
    # The README's report command: the forecast beside what was measured, skipped cell included.
    out = tmp_path / "report"
    proc = run_module(
        [
            "experiments/report.py",
            "--uri",
            db,
            "--experiment",
            "gated",
            "--risk",
            "--out",
            str(out),
        ],
        cache_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (out / "risk.md").read_text().splitlines()
    rows = {line.split(" | ")[2]: line for line in lines if line.startswith("| tiny |")}
    step = int(skipped.data.metrics["risk/collapse_step"])
    assert f"| 1000.0 | {step} | 2 | skipped |" in rows["1000.0"]  # no measured metrics: "–"
    assert rows["1000.0"].endswith("| – | – | – |")
    assert "| 0.0001 | none | 2 | passed |" in rows["0.0001"]
    assert (
        "within the run's 2 planned steps; training skipped" in (skip_dir / "train.log").read_text()
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["risk=preflight", "risk.parameter_names=[*nope*]"],
            "error: risk.parameter_names: pattern '*nope*' matches no trainable parameter",
        ),
        (
            ["risk=preflight", "risk.max_parameters=100"],
            "error: risk.parameter_names selects 512 parameters (8 tensors), more than "
            "risk.max_parameters=100",
        ),
        (
            ["regularizer=alignguard", "risk.safety.name=local", "risk.safety.path=EMPTY"],
            "error: risk.safety (local): UNPAIRED:1: field 'rejected' is empty",
        ),
    ],
    ids=["pattern", "scale_guard", "no_pairs"],
)
def test_bad_input_stops_before_training_with_one_line(tmp_path, cache_dir, overrides, message):
    empty = tmp_path / "unpaired.jsonl"
    empty.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": ""}) + "\n")
    overrides = [o.replace("EMPTY", str(empty)) for o in overrides]
    message = message.replace("UNPAIRED", str(empty))
    args = ["model=tiny", "train.max_steps=2", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    proc = run_train([*args, *overrides], tmp_path / "run", cache_dir)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(message), last
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_standalone_preflight_logs_its_own_run(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    proc = run_module(
        ["-m", "alignment.risk", "model=tiny", "method=sft", "optimizer.lr=1e-3",
         f"tracking.uri={db}", f"hydra.run.dir={tmp_path}/pre"],
        cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "risk preflight: collapse_step=" in proc.stderr + proc.stdout
    run = MlflowClient(db).get_run((tmp_path / "pre" / "mlflow_run_id").read_text())
    assert run.data.tags["kind"] == "preflight" and run.info.status == "FINISHED"
    assert "risk/gamma_hat" in run.data.metrics and "train/loss" not in run.data.metrics
    assert (tmp_path / "pre" / "risk" / "forecast.png").is_file()
    assert not (tmp_path / "pre" / "checkpoints").exists()


@pytest.mark.slow
def test_plan_sweep_risk_prints_each_cells_forecast(cache_dir):
    proc = run_module(
        ["scripts/plan_sweep.py", "--risk", "model=tiny", "optimizer.lr=1e-4,1e3",
         "train.max_steps=2"],
        cache_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "risk.gate=skip would" in line]
    assert lines == [
        "        risk.gate=skip would run this cell",
        "        risk.gate=skip would SKIP this cell",
    ]
    assert proc.stdout.strip().endswith("s") and "2 cells composed and validated" in proc.stdout


def test_multirun_sh_accepts_the_gate(tmp_path):
    """./multirun.sh passes its overrides to the dry run and the sweep: risk.gate=skip composes
    in every cell of the paper grid (narrowed to model=tiny)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from plan_sweep import plan_configs

    planned = plan_configs(["experiment=paper_grid", "model=tiny", "risk.gate=skip"])
    assert len(planned) == 7 and all(cfg.risk.gate == "skip" for _, cfg in planned)


CELLS = [(m, o) for m in ("sft", "dpo", "cita", "factual_dpo") for o in ("adamw", "grit")]


@pytest.mark.parametrize(
    ("method", "optimizer"),
    [pytest.param(*c, marks=[] if c in (("dpo", "adamw"), ("sft", "grit")) else pytest.mark.slow)
     for c in CELLS],
)  # fmt: skip
def test_alignguard_composes_with_every_method_and_optimizer(
    tmp_path, cache_dir, method, optimizer
):
    db = f"sqlite:///{tmp_path}/m.db"
    overrides = [
        "model=tiny", f"method={method}", f"optimizer={optimizer}", "regularizer=alignguard",
        "risk.max_samples=16", "train.max_steps=2", "train.samples=0", f"tracking.uri={db}",
    ]  # fmt: skip
    assert run_training(compose_cfg(overrides, tmp_path / "run", cache_dir)) is not None
    client = MlflowClient(db)
    run = client.get_run((tmp_path / "run" / "mlflow_run_id").read_text())
    assert run.info.status == "FINISHED" and "risk/gamma_hat" in run.data.metrics
    for key in REG:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
