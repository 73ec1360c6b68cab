"""train.py end to end on the tiny model: what lands in MLflow, resume-safety, and secrets."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_train

SECRET = "sk-test-very-secret-4242"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("e2e")
    db = f"sqlite:///{tmp}/mlflow.db"
    args = [
        "model=tiny",
        "method=dpo",
        "train.max_steps=4",
        "train.batch_size=2",
        "train.logging_steps=1",
        f"tracking.uri={db}",
        "tracking.experiment=e2e",
        "+tracking.tags.note=${oc.env:HF_TOKEN}",
        # A secret pasted into a value (tracking.run_name=r-<secret>) is rejected before Hydra
        # writes anything (tests/test_bad_input.py); an interpolated one is redacted.
    ]
    proc = run_train(args, tmp / "run", cache_dir, env={"HF_TOKEN": SECRET})
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(db)
    run_id = (tmp / "run" / "mlflow_run_id").read_text()
    return client, client.get_run(run_id), tmp, proc, args, db


def test_params_and_tags(tiny_run):
    client, run, *_ = tiny_run
    p, t = run.data.params, run.data.tags
    assert p["method.beta"] == "0.1" and p["model.name"] == "tiny" and p["seed"] == "0"
    assert p["model.lora.r"] == "4" and p["dataset.max_length"] == "448"
    assert t["method"] == "dpo" and t["model"] == "tiny" and t["optimizer"] == "adamw"
    assert t["dataset"] == "safety_prefs" and t["seed"] == "0"
    assert len(t["git_commit"]) in (7, 40) or t["git_commit"] == "unknown"
    assert run.info.status == "FINISHED"


def test_step_metrics(tiny_run):
    client, run, *_ = tiny_run
    rid = run.info.run_id
    for key in (
        "train/loss",
        "train/rewards/accuracy",
        "train/rewards/margins",
        "train/lr",
        "train/tokens_per_s",
        "train/logps/chosen",
        "train/padding_ratio",
    ):
        history = client.get_metric_history(rid, key)
        assert [m.step for m in history] == [1, 2, 3, 4], key
    assert client.get_metric_history(rid, "data/train_examples")[0].value > 100
    for key in ("data/duplicate_rows", "data/chosen_equals_rejected", "data/train_val_overlap"):
        assert [m.value for m in client.get_metric_history(rid, key)] == [0.0], key


def test_artifacts(tiny_run):
    client, run, tmp, *_ = tiny_run
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"adapter", "summary.json", ".hydra", "resolved_config.yaml"} <= names
    adapter = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in adapter
    config = {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")}
    assert ".hydra/config.yaml" in config
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["mlflow_run_id"] == run.info.run_id and summary["steps"] == 4


def test_secrets_never_reach_mlflow(tiny_run):
    client, run, tmp, proc, *_ = tiny_run
    everything = json.dumps([run.data.params, run.data.tags, run.info.run_name])
    assert SECRET not in everything
    assert "***" in run.data.tags["note"]
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET not in (tmp / "run" / "resolved_config.yaml").read_text()


def test_rerun_of_finished_job_does_nothing(tiny_run, cache_dir):
    client, run, tmp, _, args, db = tiny_run
    proc = run_train(args, tmp / "run", cache_dir, env={"HF_TOKEN": SECRET})
    assert proc.returncode == 0 and "nothing to do" in proc.stdout + proc.stderr
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 1


def test_summary_printed(tiny_run):
    *_, proc, _, db = tiny_run[:4] + tiny_run[4:]
    out = proc.stdout + proc.stderr
    assert "reward accuracy" in out and "mlflow ui --backend-store-uri" in out
    assert "adapter saved" in out
    assert "on 40 held-out harmful prompts" in out and "on 40 held-out benign prompts" in out


def test_heldout_rates_in_mlflow_match_the_logged_answers(tiny_run):
    """The four rates are recomputed from heldout_answers.jsonl (80 prompts, answered with the
    adapters off and on) with the refusal detector, and must equal what MLflow holds."""
    from alignment.evaluation.refusal import answer_rate, refusal_rate

    client, run, tmp, *_ = tiny_run
    rows = [json.loads(x) for x in (tmp / "run" / "heldout_answers.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["harmful"] * 40 + ["benign"] * 40
    harmful, benign = rows[:40], rows[40:]
    expected = {
        "refusal_rate_harmful_before": refusal_rate([r["before"] for r in harmful]),
        "refusal_rate_harmful_after": refusal_rate([r["after"] for r in harmful]),
        "answer_rate_benign_before": answer_rate([r["before"] for r in benign]),
        "answer_rate_benign_after": answer_rate([r["after"] for r in benign]),
    }
    metrics = run.data.metrics
    for key, value in expected.items():
        assert metrics[f"heldout/{key}"] == pytest.approx(value), key
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["heldout"]["n_harmful"] == 40 and summary["heldout"].items() >= expected.items()
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"heldout_answers.jsonl", "samples.md"} <= names


@pytest.mark.parametrize("method", ["sft", "baseline"])
def test_other_foundation_methods(method, tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    proc = run_train(
        [
            f"method={method}",
            "model=tiny",
            "train.max_steps=2",
            f"tracking.uri={db}",
            "train.samples=0",
        ],
        tmp_path / "run",
        cache_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = MlflowClient(db).get_run((tmp_path / "run" / "mlflow_run_id").read_text())
    assert run.data.tags["method"] == method
    trained = "train/loss" in run.data.metrics
    assert trained == (method == "sft")
    assert Path(tmp_path / "run" / "adapter").is_dir() == (method == "sft")
