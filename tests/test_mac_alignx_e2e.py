"""method=mac and method=alignx end to end on `tiny`, the way users call them: train.py, then
evaluate.py run=<id>; AlignX's stages as nested MLflow runs, stage 2 alone from a stage-1 run id;
a layer the model lacks fails in one line before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from tests.conftest import REPO, run_train

# Each test starts train.py/evaluate.py processes (tens of seconds each on a busy machine); the
# in-process tests in tests/models/ and tests/alignx/ cover the same code quickly.
pytestmark = pytest.mark.slow

EVAL = ["eval=[aqi]", "eval.aqi.reducer=pca", "eval.aqi.samples_per_category=3"]
MAC = ["model=tiny", "method=mac", "method.layers=[1]", "train.batch_size=2"]
ALIGNX = ["model=tiny", "method=alignx", "train.batch_size=2", "method.projector_steps=300"]
ALIGNX += ["method.router_steps=300"]


def trained(args: list[str], tmp: Path, cache: Path, name: str) -> tuple[MlflowClient, str]:
    db = f"sqlite:///{tmp}/m.db"
    proc = run_train([*args, f"tracking.uri={db}", "train.max_steps=4"], tmp / name, cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return MlflowClient(db), (tmp / name / "mlflow_run_id").read_text().strip()


@pytest.fixture(scope="module")
def mac_run(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("mac")
    client, run_id = trained(MAC, tmp, cache_dir, "run")
    return client, run_id, tmp


@pytest.fixture(scope="module")
def alignx_run(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("alignx")
    client, run_id = trained(ALIGNX, tmp, cache_dir, "run")
    return client, run_id, tmp


def test_mac_trains_only_the_circuit_and_logs_the_heatmap(mac_run):
    client, run_id, tmp = mac_run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("MAC-adamw-tiny")
    assert run.data.tags["method"] == "mac" and run.data.tags["method_label"] == "MAC"
    for axis in ("helpfulness", "harmlessness", "honesty"):
        assert len(client.get_metric_history(run_id, f"train/nll/{axis}")) == 4
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"adapter", "mac_axis_attention.png", "summary.json"} <= names
    adapter = {a.path for a in client.list_artifacts(run_id, "adapter")}
    assert "adapter/mac_circuit.safetensors" in adapter
    assert "adapter/adapter_model.safetensors" not in adapter  # lora=false: the circuit only
    weights = load_file(str(tmp / "run" / "adapter" / "mac_circuit.safetensors"))
    assert set(weights) and all(k.startswith("circuits.1.") for k in weights)
    # the checkpoint holds the circuit, not the frozen base
    (ckpt,) = (tmp / "run" / "checkpoints").glob("checkpoint-*/model.safetensors")
    assert set(load_file(str(ckpt))) == {f"extension.{k}" for k in weights}


def test_evaluate_loads_the_mac_circuit(mac_run, cache_dir):
    client, run_id, tmp = mac_run
    db = f"sqlite:///{tmp}/m.db"
    args = [f"run={run_id}", f"tracking.uri={db}", *EVAL]
    proc = run_train(args, tmp / "eval", cache_dir, script="evaluate.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval/aqi/chi_sil/overall" in client.get_run(run_id).data.metrics

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment.config import register_configs
    from alignment.evaluation.runner import load_target, resolve_target
    from alignment.models.steered import SteeredModel
    from alignment.tracking import Tracker

    register_configs()
    overrides = [f"run={run_id}", f"tracking.uri={db}", f"output_dir={tmp / 'x'}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        composed = compose("evaluate", overrides=[*overrides, f"cache_dir={cache_dir}"])
    cfg = OmegaConf.to_object(composed)
    target = resolve_target(cfg, Tracker(cfg.tracking, tmp / "x"))
    model = load_target(cfg, target, torch.device("cpu"))
    assert isinstance(model, SteeredModel) and target.method.name == "mac"
    saved = load_file(str(tmp / "run" / "adapter" / "mac_circuit.safetensors"))
    for key, value in saved.items():
        assert torch.equal(model.extension.state_dict()[key], value)


def test_alignx_stages_are_nested_runs_labelled_alignx_repro(alignx_run):
    client, parent, tmp = alignx_run
    run = client.get_run(parent)
    assert run.info.run_name.startswith("AlignX-repro-adamw-tiny") and run.info.status == "FINISHED"
    assert run.data.tags["method_label"] == "AlignX-repro"
    query = f"tags.mlflow.parentRunId = '{parent}'"
    children = client.search_runs([run.info.experiment_id], query)
    stages = {c.data.tags["alignx_stage"]: c for c in children}
    assert set(stages) == {"1", "2"} and all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags["kind"] == "stage" for c in children)
    assert stages["1"].info.run_name.endswith("-stage1")
    assert len(client.get_metric_history(stages["1"].info.run_id, "train/loss")) == 4
    saved = json.loads((tmp / "run" / "adapter" / "alignx.json").read_text())
    assert saved["mix"] == "logits" and saved["lambda1"] == 0.6
    assert saved["axes"] == ["helpfulness", "harmlessness", "honesty"]
    assert {"train/train_runtime", "train/peak_memory_gb"} <= set(run.data.metrics)


def test_alignx_router_beats_chance_on_held_out_axis_prompts(alignx_run):
    """Prefixes fixed per axis in stage 1; the router sees unprefixed held-out prompts of the
    three axes, balanced (5 each): chance is 1/3. (Benign and harmful requests share question
    frames in the safety pairs, so the fits take 300 steps: 100 reached 0.56.)"""
    client, parent, _ = alignx_run
    metrics = client.get_run(parent).data.metrics
    assert metrics["alignx/router_val_accuracy"] >= 0.6, metrics
    assert metrics["alignx/weights_val_accuracy"] >= 0.6, metrics


def test_alignx_stage2_alone_from_a_stage1_run_then_evaluate(alignx_run, cache_dir):
    client, parent, tmp = alignx_run
    db = f"sqlite:///{tmp}/m.db"
    args = [*ALIGNX, "method.stage=2", f"method.stage1_run={parent}", "method.mix=adapters"]
    _, run_id = trained(args, tmp, cache_dir, "stage2")
    run = client.get_run(run_id)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert [c.data.tags["alignx_stage"] for c in children] == ["2"]
    assert not (tmp / "stage2" / "stage1").exists()  # stage 1 was reused, not retrained
    args = [f"run={run_id}", f"tracking.uri={db}", *EVAL]
    proc = run_train(args, tmp / "eval", cache_dir, script="evaluate.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval/aqi/chi_sil/overall" in client.get_run(run_id).data.metrics


def test_bad_inputs_fail_in_one_line_before_any_run(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    stage2 = ["model=tiny", "method=alignx", "method.stage=2", "method.stage1_run=nope"]
    cases = [
        (["model=tiny", "method=mac", "method.layers=[15]"], "method.layers=[15]: layer 15"),
        (stage2, "method.stage1_run=nope: no such MLflow run"),
    ]
    for i, (args, message) in enumerate(cases):
        proc = run_train([*args, f"tracking.uri={db}"], tmp_path / str(i), cache_dir)
        assert proc.returncode != 0 and message in proc.stderr.strip().splitlines()[-1]
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m.db").exists() or not MlflowClient(db).search_experiments()[1:]
