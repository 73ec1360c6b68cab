"""evaluate.py end to end on a tiny training run: metrics, params and PNGs land in that run;
the baseline gets its own run, tagged like a training run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import SHARED_DATA, run_train

TQA = SHARED_DATA / "truthfulqa-en.json"
OUTPUT: dict[str, str] = {}  # what evaluate.py printed, for the side-by-side check


def _eval_args(db: str, cache: Path) -> list[str]:
    tiny_dir = next((cache / "models").glob("tiny-*"))  # materialised by the training run
    args = [
        f"tracking.uri={db}",
        "eval.aqi.reducer=pca",
        "eval.aqi.samples_per_category=3",
        f"eval.judge.model={tiny_dir}",
        "eval.judge.max_samples=2",
        "eval.judge.max_new_tokens=4",
        "eval.judge.generation.max_new_tokens=4",
        "eval.judge.bootstrap_samples=20",
        "eval.judge.tasks=[helpfulness,safety]",
    ]
    if TQA.is_file():
        args += [
            "eval=[aqi,truthfulqa,judge]",
            f"eval.truthfulqa.data={TQA}",
            "eval.truthfulqa.max_questions=2",
        ]
    else:
        args += ["eval=[aqi,judge]"]
    return args


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("eval_e2e")
    db = f"sqlite:///{tmp}/m.db"
    train = ["model=tiny", "train.max_steps=2", "train.samples=0", f"tracking.uri={db}"]
    proc = run_train(train, tmp / "run", cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = (tmp / "run" / "mlflow_run_id").read_text().strip()
    args = [f"run={run_id}", *_eval_args(db, cache_dir)]
    proc = run_train(args, tmp / "eval", cache_dir, script="evaluate.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    OUTPUT["evaluate"] = proc.stdout + proc.stderr
    return MlflowClient(db), run_id, tmp, db


def test_metrics_params_and_figures_land_in_the_training_run(evaluated) -> None:
    client, run_id, *_ = evaluated
    run = client.get_run(run_id)
    metrics, params = run.data.metrics, run.data.params
    aqi = ("chi_sil/overall", "xb_chi/overall", "chi_sil/overall/ss_norm", "xb_chi/overall/chi")
    judge = ("helpfulness/win_rate_alpaca_eval", "helpfulness/invalid_rate", "safety/invalid_rate")
    for key in [f"eval/aqi/{k}" for k in aqi] + [f"eval/judge/{k}" for k in judge]:
        assert key in metrics, key
    assert 0.0 <= metrics["eval/aqi/chi_sil/overall"] <= 1.0
    assert metrics["eval/aqi/xb_chi/overall/chi_norm"] == pytest.approx(100.0)
    if TQA.is_file():
        assert 0.0 <= metrics["eval/truthfulqa/mc1"] <= 1.0 and metrics["eval/truthfulqa/n"] == 2
        assert params["eval/truthfulqa/prompt_style"] == "harness"
    assert params["eval/aqi/gamma"] == "0.5" and params["eval/aqi/pooling"] == "mean_masked"
    assert params["eval/aqi/version"] == "1.0" and params["eval/judge/backend_kind"] == "local_hf"
    files = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert {"eval/aqi_chi_sil.png", "eval/aqi_xb_chi.png", "eval/aqi_summary.csv"} <= files
    assert "eval/judge_records.jsonl" in files
    # Besides the training run, exactly one baseline run: the adapter-disabled model's scores.
    others = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run_id]
    assert len(others) == 1 and others[0].data.tags["method"] == "baseline"
    base = others[0].data.metrics
    assert base["eval/aqi/chi_sil/overall"] != metrics["eval/aqi/chi_sil/overall"]


def test_trained_and_baseline_printed_side_by_side(evaluated) -> None:
    out = OUTPUT["evaluate"]
    assert "trained vs base model" in out
    row = next(line for line in out.splitlines() if line.startswith("eval/aqi/chi_sil/overall "))
    trained, baseline, diff = (float(x) for x in row.split()[1:4])
    assert abs(trained - baseline - diff) < 1e-3


def test_baseline_gets_its_own_run_tagged_like_training(evaluated, cache_dir) -> None:
    client, run_id, tmp, db = evaluated
    args = [
        "method=baseline",
        "model=tiny",
        f"tracking.uri={db}",
        "eval=[aqi]",
        "eval.aqi.reducer=none",
        "eval.aqi.samples_per_category=3",
        "eval.aqi.variants=[chi_sil]",
    ]
    proc = run_train(args, tmp / "baseline", cache_dir, script="evaluate.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    base_id = (tmp / "baseline" / "mlflow_run_id").read_text().strip()
    assert base_id != run_id
    base, trained = client.get_run(base_id), client.get_run(run_id)
    assert base.data.tags["method"] == "baseline" and base.data.tags["eval_only"] == "true"
    for tag in ("model", "optimizer", "dataset", "seed", "git_commit"):
        assert tag in base.data.tags and tag in trained.data.tags
    assert "eval/aqi/chi_sil/overall" in base.data.metrics
    assert base.info.experiment_id == trained.info.experiment_id


def test_bad_target_fails_with_a_clear_message(evaluated, cache_dir) -> None:
    *_, tmp, db = evaluated
    proc = run_train(
        ["method=dpo", "model=tiny", f"tracking.uri={db}"],
        tmp / "bad",
        cache_dir,
        script="evaluate.py",
    )
    assert proc.returncode != 0
    assert "evaluate.py needs run=<MLflow run id>" in proc.stderr
