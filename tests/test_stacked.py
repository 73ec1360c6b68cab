"""Stacked runs (`experiment=stacked`): Base -> SFT -> DPO -> CITA as one command.

In-process chain (`chain`): the tiny model on 12 local pairs, a learning rate of 1e-2 so that
two steps per stage move each adapter measurably, and the cached reference, so every
reference log-prob a stage trains against sits in a cache entry that can be read back and
compared with an independent forward of the previous stage's saved adapter. The command as
the README shows it runs in a subprocess (`test_stacked_command_...`), twice: the second time
after its last stage lost its DONE marker, as a killed command would find it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from peft import PeftModel
from safetensors.torch import load_file

from alignment.data.collate import Collator
from alignment.data.prepare import prepare_data
from alignment.forward import forward_logps
from alignment.init_adapter import adapter_fingerprint, resolve_init_adapter
from alignment.methods import get_method
from alignment.models import load_base, load_tokenizer
from alignment.pipeline import run_training
from alignment.refcache import data_splits, entry_path
from alignment.stacked import stage_config
from alignment.trainer import AlignmentTrainer
from bench.refcache_grid import fresh_cache, write_flagged_pairs
from tests.conftest import compose_cfg, run_train

CPU = torch.device("cpu")
STAGES = ("1-sft", "2-dpo", "3-cita")


def _overrides(data, db: str, *extra: str) -> list[str]:
    return [
        "experiment=stacked",
        "model=tiny",
        "dataset=local",
        f"dataset.path={data}",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.samples=0",
        "train.torch_threads=1",
        "train.reference=cached",
        "optimizer.lr=1e-2",
        "optimizer.warmup_ratio=0",  # both steps update: the adapters move in every stage
        f"tracking.uri={db}",
        *extra,
    ]


@pytest.fixture(scope="module")
def chain(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("stacked")
    data = write_flagged_pairs(tmp / "pairs.jsonl", 12, instruction="Answer factually.")
    db = f"sqlite:///{tmp}/m.db"
    cache = fresh_cache(tmp / "cache", cache_dir)  # its refcache holds this chain's entries only
    cfg = compose_cfg(_overrides(data, db), tmp / "run", cache)
    run_training(cfg)
    client = MlflowClient(db)
    return cfg, tmp / "run", _by_stage(client), client


def _by_stage(client) -> dict:
    """The experiment's runs by their `stage` tag ("parent" for the command's own run)."""
    exp = client.get_experiment_by_name("stacked")
    return {r.data.tags.get("stage", "parent"): r for r in client.search_runs([exp.experiment_id])}


def _policy_logps(cfg, adapter, batch) -> torch.Tensor:
    """Log-probs of base + `adapter` (None: the bare base), loaded independently, eval mode."""
    model = load_base(cfg.model, cfg.cache_dir, CPU)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    with torch.no_grad():
        return forward_logps(model, batch)[0]


def test_three_stages_nest_under_one_parent_run(chain):
    cfg, out, runs, _ = chain
    assert sorted(runs) == sorted([*STAGES, "parent"])
    parent = runs["parent"]
    assert parent.data.tags["kind"] == "stacked" and "method" not in parent.data.tags
    assert parent.data.tags["stages"] == "sft,dpo,cita" and parent.info.status == "FINISHED"
    for i, label in enumerate(STAGES):
        run = runs[label]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["method"] == label.split("-")[1]
        assert (out / "stages" / label / "DONE").is_file()
        assert (out / "stages" / label / "adapter" / "adapter_model.safetensors").is_file()
        if i == 0:  # SFT starts from a fresh LoRA on the base
            assert "init_adapter" not in run.data.tags
            continue
        previous = out / "stages" / STAGES[i - 1] / "adapter"
        assert run.data.tags["init_adapter"] == str(previous)
        assert run.data.tags["init_adapter_sha256"] == adapter_fingerprint(str(previous))
    assert runs["3-cita"].data.params["method.reference_free"] == "False"
    # The saved result is the trained adapter alone, not its frozen reference copy.
    assert not (out / "stages" / "3-cita" / "adapter" / "reference").exists()


def test_each_stage_starts_from_the_previous_policy(chain):
    """Step 1 of DPO and of CITA: the policy is its reference (both are the previous stage's
    policy), so the implicit rewards beta*(log pi - log pi_ref) are 0, CITA's DPO term is ln 2
    and its KL estimate 0."""
    _, _, runs, client = chain

    def first(label: str, key: str) -> float:
        return client.get_metric_history(runs[label].info.run_id, key)[0].value

    for label in STAGES[1:]:
        for key in ("train/rewards/chosen", "train/rewards/rejected", "train/rewards/margins"):
            assert first(label, key) == pytest.approx(0.0, abs=1e-5), (label, key)
    chosen, ref = first("3-cita", "train/logps/chosen"), first("3-cita", "train/logps/ref_chosen")
    assert chosen == pytest.approx(ref, abs=1e-4)
    assert first("3-cita", "train/cita/contrastive") == pytest.approx(math.log(2), abs=1e-5)
    assert first("3-cita", "train/cita/kl") == pytest.approx(0.0, abs=1e-4)
    # ... and by the last step they have moved apart (the check above is not vacuous).
    last = client.get_metric_history(runs["3-cita"].info.run_id, "train/rewards/margins")[-1]
    assert abs(last.value) > 1e-4


def test_a_stages_reference_is_the_previous_stages_policy(chain):
    """Per row: the cached pi_ref log-probs stage 3 (CITA) trained against equal the log-probs
    of stage 2's (DPO's) saved adapter, and stage 2's equal stage 1's (SFT's) adapter; neither
    is the bare base's. The two entries have different keys (one per init adapter)."""
    cfg, out, runs, _ = chain
    entries = {e.stem for e in (Path(cfg.cache_dir) / "refcache").glob("*.safetensors")}
    assert len(entries) == 2  # DPO's and CITA's; SFT needs no reference
    for i, label in ((1, "2-dpo"), (2, "3-cita")):
        stage = resolve_init_adapter(stage_config(cfg, i, None))
        assert runs[label].data.metrics["refcache/hit"] == 0.0  # its own entry, not the other's
        tokenizer = load_tokenizer(stage.model, stage.cache_dir)
        data = prepare_data(stage, get_method(stage.method), tokenizer)
        assert entry_path(stage, data_splits(data)).stem in entries
        refs = data.reference(None)["train"]  # a hit: no model needed
        rows = [data.train[j] for j in range(len(data.train))]
        batch = Collator(tokenizer.pad_token_id, pairs=True)(rows)
        previous = out / "stages" / STAGES[i - 1] / "adapter"
        want = _policy_logps(stage, previous, batch)
        got = torch.cat(refs)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
        base = _policy_logps(stage, None, batch)
        assert (got - base).abs().max() > 1e-2, label  # pi_ref is not the bare base


def test_training_from_a_run_id(chain, tmp_path):
    """model.init_adapter=run:<id> resolves through MLflow to that run's adapter; the cache
    entry is keyed on the adapter's weights, so it is the one stage 3 (same init adapter,
    same data) computed: a hit."""
    cfg, out, runs, _ = chain
    dpo_id = runs["2-dpo"].info.run_id
    overrides = [o for o in _overrides(cfg.dataset.path, cfg.tracking.uri) if "experiment" not in o]
    single = compose_cfg(
        [
            *overrides,
            "method=cita",
            "method.reference_free=false",
            f"model.init_adapter=run:{dpo_id}",
            "train.max_steps=1",
        ],
        tmp_path / "run",
        cfg.cache_dir,
    )
    resolved = resolve_init_adapter(single)
    assert resolved.model.init_adapter == str(out / "stages" / "2-dpo" / "adapter")
    run_training(single)
    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run((tmp_path / "run" / "mlflow_run_id").read_text().strip())
    assert run.data.tags["init_adapter"] == f"run:{dpo_id}"
    assert run.data.tags["init_adapter_sha256"] == runs["3-cita"].data.tags["init_adapter_sha256"]
    assert run.data.metrics["refcache/hit"] == 1.0


def test_a_killed_chain_resumes_its_running_stage(chain, tmp_path, monkeypatch):
    """The chain of `chain`, with a checkpoint per step, interrupted in stage 3 after its first
    step (as Ctrl-C or a scheduler's SIGTERM would). The same command again: stages 1 and 2 are
    skipped, stage 3 resumes from checkpoint-1 into its own MLflow run, the parent run is
    reopened, and the final adapter is the uninterrupted chain's."""
    cfg0, out0, runs0, _ = chain
    db = f"sqlite:///{tmp_path}/m.db"
    overrides = _overrides(cfg0.dataset.path, db, "train.save_steps=1")
    cfg = compose_cfg(overrides, tmp_path / "run", cfg0.cache_dir)
    real_step = AlignmentTrainer.training_step

    def interrupted(self, model, inputs, num_items_in_batch=None):
        if "3-cita" in self.args.output_dir and self.state.global_step == 1:
            raise KeyboardInterrupt
        return real_step(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(AlignmentTrainer, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg)
    monkeypatch.undo()
    client = MlflowClient(db)
    killed = _by_stage(client)
    assert {k: r.info.status for k, r in killed.items()} == {
        "parent": "KILLED", "1-sft": "FINISHED", "2-dpo": "FINISHED", "3-cita": "KILLED"
    }  # fmt: skip
    stage3 = tmp_path / "run" / "stages" / "3-cita"
    assert (stage3 / "checkpoints" / "checkpoint-1").is_dir() and not (stage3 / "DONE").exists()

    run_training(cfg)
    runs = _by_stage(client)
    ids = {k: r.info.run_id for k, r in runs.items()}
    assert ids == {k: r.info.run_id for k, r in killed.items()}  # reopened, none added
    assert all(r.info.status == "FINISHED" for r in runs.values())
    for label in STAGES:
        steps = [m.step for m in client.get_metric_history(runs[label].info.run_id, "train/loss")]
        assert steps == [1, 2], (label, steps)  # nothing trained twice
    assert (stage3 / "DONE").is_file()
    resumed = load_file(str(stage3 / "adapter" / "adapter_model.safetensors"))
    straight = load_file(str(out0 / "stages" / "3-cita" / "adapter" / "adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6)


def test_stacked_command_runs_three_nested_stages(tmp_path, cache_dir):
    """`python train.py experiment=stacked model=tiny train.max_steps=2` as the README shows
    it (with its own MLflow store and run directory): three stages nested under one parent.
    The same command again finds every stage done and adds nothing."""
    db = f"sqlite:///{tmp_path}/m.db"
    args = ["experiment=stacked", "model=tiny", "train.max_steps=2", f"tracking.uri={db}"]
    proc = run_train(args, tmp_path / "run", cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(db)
    exp = client.get_experiment_by_name("stacked")
    before = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    assert len(before) == 4
    (parent,) = [r for r in before.values() if r.data.tags.get("kind") == "stacked"]
    children = [r for r in before.values() if r is not parent]
    assert sorted(r.data.tags["stage"] for r in children) == list(STAGES)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    methods = {r.data.tags["stage"]: r.data.tags["method"] for r in children}
    assert methods == {"1-sft": "sft", "2-dpo": "dpo", "3-cita": "cita"}
    proc = run_train(args, tmp_path / "run", cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("is complete (MLflow run") == 3  # every stage skipped
    after = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    assert set(after) == set(before)
    for run in children:
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
