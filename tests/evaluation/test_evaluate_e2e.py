"""evaluate.py end to end on a tiny training run, run the way users run it: from a working
directory with the default tracking store (./mlflow.db) and the default output layout, so the
adapter path has `=` and `,` in it. Metrics, params and PNGs land in the training run; the
baseline gets its own run, tagged like the training run; bad targets and failed suites fail with
one line and leave nothing RUNNING. The README's commands, as written, are the slow tests."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO

OUTPUT: dict[str, str] = {}  # what evaluate.py printed, for the side-by-side check
TRAIN = ["model=tiny", "train.max_steps=2", "train.samples=0", "seed=1", "tag=e2e"]


def run_in(cwd: Path, script: str, args: list[str], cache: Path) -> subprocess.CompletedProcess:
    """`python <repo>/<script> <args>` from `cwd`, as a user types it (no hydra.run.dir)."""
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(REPO / script), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """(work dir, run id, adapter path relative to it) of one tiny training run."""
    work = tmp_path_factory.mktemp("eval_e2e")
    proc = run_in(work, "train.py", TRAIN, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (work / "outputs" / "runs" / "tiny" / "dpo-adamw").iterdir()
    adapter = (run_dir / "adapter").relative_to(work)
    return work, (run_dir / "mlflow_run_id").read_text().strip(), str(adapter)


def _client(work: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{work / 'mlflow.db'}")


def _small(cache: Path) -> list[str]:
    """Suite sizes a test can afford; the judge is the tiny model itself."""
    tiny_dir = next((cache / "models").glob("tiny-*"))  # materialised by the training run
    return [
        "eval=[aqi,truthfulqa,judge]",
        "eval.aqi.reducer=pca",
        "eval.aqi.samples_per_category=3",
        "eval.truthfulqa.max_questions=2",
        f"eval.judge.model={tiny_dir}",
        "eval.judge.max_samples=2",
        "eval.judge.max_new_tokens=4",
        "eval.judge.generation.max_new_tokens=4",
        "eval.judge.bootstrap_samples=20",
        "eval.judge.tasks=[helpfulness,safety]",
    ]


@pytest.fixture(scope="module")
def evaluated(trained, cache_dir):
    work, run_id, _ = trained
    proc = run_in(work, "evaluate.py", [f"run={run_id}", *_small(cache_dir)], cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    OUTPUT["evaluate"] = proc.stdout + proc.stderr
    return _client(work), run_id, work


def test_metrics_params_and_figures_land_in_the_training_run(evaluated) -> None:
    client, run_id, _ = evaluated
    run = client.get_run(run_id)
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    aqi = ("chi_sil/overall", "xb_chi/overall", "chi_sil/overall/ss_norm", "xb_chi/overall/chi")
    judge = ("helpfulness/win_rate_alpaca_eval", "helpfulness/invalid_rate", "safety/invalid_rate")
    for key in [f"eval/aqi/{k}" for k in aqi] + [f"eval/judge/{k}" for k in judge]:
        assert key in metrics, key
    assert 0.0 <= metrics["eval/aqi/chi_sil/overall"] <= 1.0
    assert metrics["eval/aqi/xb_chi/overall/chi_norm"] == pytest.approx(100.0)
    assert 0.0 <= metrics["eval/truthfulqa/mc1"] <= 1.0 and metrics["eval/truthfulqa/n"] == 2
    assert params["eval/truthfulqa/data"] == "builtin"  # offline by default
    assert params["eval/truthfulqa/prompt_style"] == "harness"
    assert params["eval/aqi/gamma"] == "0.5" and params["eval/aqi/pooling"] == "reference"
    assert params["eval/aqi/chi_sil/pooling"] == "mean_unmasked"
    assert params["eval/aqi/xb_chi/pooling"] == "mean_masked"
    assert params["eval/aqi/version"] == "1.1" and params["eval/truthfulqa/version"] == "1.1"
    assert params["eval/judge/backend_kind"] == "local_hf"
    assert tags["eval_status"] == "ok" and tags["eval/truthfulqa/status"] == "ok"
    files = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert {"eval/aqi_chi_sil.png", "eval/aqi_xb_chi.png", "eval/aqi_summary.csv"} <= files
    assert "eval/judge_records.jsonl" in files


def test_run_target_is_filed_under_the_runs_own_names(evaluated) -> None:
    """Hydra's directory is named by the run id (outputs/eval/runs/<id>), the eval files go to the
    training run's own directory, and nothing is written under the defaults (smollm2_135m,
    baseline). The baseline run is tagged like the training run (its seed and tag)."""
    client, run_id, work = evaluated
    run = client.get_run(run_id)
    train_dir = Path(run.data.params["output_dir"])
    assert "tiny" in train_dir.parts and "dpo-adamw" in train_dir.parts
    summary = json.loads((train_dir / "eval" / "eval_metrics.json").read_text())
    assert summary["failed"] == {} and "eval/aqi/chi_sil/overall" in summary["metrics"]
    assert (work / "outputs" / "eval" / "runs" / run_id).is_dir()
    assert not (work / "outputs" / "eval" / "smollm2_135m").exists()
    others = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run_id]
    assert len(others) == 1, [r.data.tags for r in others]
    base = others[0]
    assert base.data.tags["method"] == "baseline" and base.info.status == "FINISHED"
    for key in ("model", "seed", "tag", "optimizer", "dataset"):
        assert base.data.tags[key] == run.data.tags[key], key
    assert base.data.tags["seed"] == "1" and base.data.tags["tag"] == "e2e"
    chi_sil = "eval/aqi/chi_sil/overall"
    assert base.data.metrics[chi_sil] != run.data.metrics[chi_sil]


def test_trained_and_baseline_printed_side_by_side(evaluated) -> None:
    out = OUTPUT["evaluate"]
    assert "trained vs base model" in out
    row = next(line for line in out.splitlines() if line.startswith("eval/aqi/chi_sil/overall "))
    trained, baseline, diff = (float(x) for x in row.split()[1:4])
    assert abs(trained - baseline - diff) < 1e-3


def test_adapter_path_with_equals_and_commas(evaluated, trained, cache_dir) -> None:
    """The project's own run directory, typed as is: `adapter=outputs/runs/.../k=v,k=v/adapter`.
    The adapter sits next to its run's id file, so the metrics go into that run."""
    client, run_id, work = evaluated
    adapter = trained[2]
    assert "=" in adapter and "," in adapter
    args = [f"adapter={adapter}", "model=tiny", "eval=[aqi]", "eval.aqi.reducer=pca"]
    args += ["eval.aqi.samples_per_category=2", "eval.aqi.variants=[chi_sil]"]
    before = client.get_metric_history(run_id, "eval/aqi/n")
    proc = run_in(work, "evaluate.py", [*args, "compare_baseline=false"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = client.get_metric_history(run_id, "eval/aqi/n")
    assert [m.value for m in after if m not in before] == [28.0]  # 7 axioms x 2 labels x 2


def test_unknown_run_is_one_line(evaluated, cache_dir) -> None:
    _, _, work = evaluated
    proc = run_in(work, "evaluate.py", ["run=0123456789abcdef0123456789abcdef"], cache_dir)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last_line(proc).startswith("error: run=0123456789abcdef0123456789abcdef: no such")


def test_missing_adapter_fails_before_a_run_exists(evaluated, cache_dir) -> None:
    client, run_id, work = evaluated
    experiment = client.get_run(run_id).info.experiment_id
    runs_before = {r.info.run_id for r in client.search_runs([experiment])}
    proc = run_in(work, "evaluate.py", ["adapter=/nonexistent", "model=tiny"], cache_dir)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last_line(proc) == (
        "error: adapter=/nonexistent: no such directory (expected a saved LoRA adapter)"
    )
    runs = client.search_runs([experiment])
    assert {r.info.run_id for r in runs} == runs_before
    assert all(r.info.status != "RUNNING" for r in runs)


def test_failed_suite_keeps_the_others_and_fails_the_run(evaluated, cache_dir) -> None:
    """AQI on a file without labels fails; TruthfulQA still runs and its results stay in the run,
    which ends FAILED and says which suite failed and why; the exit status is 1."""
    client, run_id, work = evaluated
    bad = work / "unlabelled.jsonl"
    bad.write_text('{"input": "hi", "axiom": "Civility & Tolerance"}\n')
    args = ["method=baseline", "model=tiny", "eval=[aqi,truthfulqa]", f"eval.aqi.data={bad}"]
    proc = run_in(work, "evaluate.py", [*args, "eval.truthfulqa.max_questions=2"], cache_dir)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last_line(proc).startswith("error: evaluation suite failed (1 of the selected): aqi: ")
    assert f"{bad}:1" in last_line(proc) and "safety_label" in last_line(proc)
    experiment = client.get_run(run_id).info.experiment_id
    (run,) = client.search_runs([experiment], "tags.eval_status = 'failed: aqi'")
    assert run.info.status == "FAILED" and run.data.tags["method"] == "baseline"
    assert run.data.tags["eval/aqi/status"] == "failed" and "failure" in run.data.tags
    assert run.data.metrics["eval/truthfulqa/n"] == 2
    assert not any(k.startswith("eval/aqi/") for k in run.data.metrics)


def test_bad_target_fails_with_a_clear_message(evaluated, cache_dir) -> None:
    _, _, work = evaluated
    proc = run_in(work, "evaluate.py", ["method=dpo", "model=tiny"], cache_dir)
    assert proc.returncode != 0
    assert "evaluate.py needs run=<MLflow run id>" in proc.stderr


# ---------------------------------------------------------------- README commands, as written


def readme_commands() -> list[str]:
    """The `python train.py model=tiny ...` and `python evaluate.py ...` lines of the README's
    evaluation section, comments stripped, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Evaluation and the paper report", 1)[1].split("```", 2)[1]
    lines = [line.split("  #", 1)[0].strip() for line in section.splitlines()]
    keep = ("python evaluate.py ", "python train.py model=tiny")
    return [line for line in lines if line.startswith(keep)]


@pytest.mark.slow
def test_readme_evaluate_commands_as_written(tmp_path, cache_dir) -> None:
    """Every evaluate.py command of the README, typed as written from a fresh directory with
    the default tracking store, with the tiny model in place of SmolLM2 and the training run's
    id for <run id>: a 2-step training run, its adapter by its path (`=` and `,` in it), the run
    by its id (default settings: all 817 shipped TruthfulQA questions, t-SNE AQI) and the base
    model, offline."""
    commands = readme_commands()
    assert len(commands) == 4 and any("adapter=outputs/runs/" in c for c in commands)
    client, run_id = _client(tmp_path), None
    for command in commands:
        if "<run id>" in command:
            command = command.replace("<run id>", run_id)
        script, *args = shlex.split(command.replace("model=smollm2_135m", "model=tiny"))[1:]
        proc = run_in(tmp_path, script, args, cache_dir)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        if script == "train.py":
            (run_dir,) = (tmp_path / "outputs" / "runs" / "tiny" / "dpo-adamw").iterdir()
            run_id = (run_dir / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.data.tags["eval_status"] == "ok"
    assert run.data.metrics["eval/truthfulqa/n"] == 817
    assert 0.0 < run.data.metrics["eval/truthfulqa/mc2"] < 1.0
    assert 0.0 <= run.data.metrics["eval/aqi/chi_sil/overall"] <= 1.0
    base_dir = tmp_path / "outputs" / "eval" / "tiny" / "baseline"
    base = client.get_run((base_dir / "mlflow_run_id").read_text().strip())
    assert base.info.status == "FINISHED" and base.data.metrics["eval/truthfulqa/n"] == 817
