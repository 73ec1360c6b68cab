"""pi_ref is the model training started from, whichever path computes it.

With a fresh LoRA adapter pi_ref is the base model (adapters disabled). Three checks, each able
to fail on its own:
- the trainer's online reference pass, on a policy whose adapter has moved, gives the bare
  base's log-probs (computed apart, from a plain `load_base`), not the policy's;
- training with the online reference and with the cached one gives the same loss curve, and the
  curve leaves ln 2 (a reference equal to the policy would pin the DPO loss there);
- a cache entry stores each pair in a canonical order (refcache.swapped); what it hands back,
  computed or reloaded, equals a direct reference pass row by row, chosen and rejected alike.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from alignment.data.collate import Collator
from alignment.data.prepare import prepare_data
from alignment.forward import forward_logps
from alignment.methods import PolicyBatch, get_method
from alignment.models import load_base, load_policy, load_tokenizer
from alignment.pipeline import build_trainer, run_training
from alignment.refcache import reference_fn, swapped
from bench.refcache_grid import fresh_cache, write_flagged_pairs
from tests.conftest import compose_cfg

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_flagged_pairs(tmp_path_factory.mktemp("refpass") / "pairs.jsonl", 12)


def _cfg(pairs, out, cache, *extra: str):
    overrides = [
        "model=tiny",
        "method=dpo",
        "dataset=local",
        f"dataset.path={pairs}",
        "dataset.val_fraction=0",
        "train.batch_size=2",
        "train.samples=0",
        "train.torch_threads=1",
        *extra,
    ]
    return compose_cfg(overrides, out, cache)


def test_online_reference_is_the_base_while_the_adapter_moves(pairs, tmp_path, cache_dir):
    cfg = _cfg(pairs, tmp_path / "run", cache_dir, "train.reference=online")
    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, enabled=False))
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    method = get_method(cfg.method)
    data = prepare_data(cfg, method, tokenizer)
    assert data.reference is None  # online: the trainer's own forward
    trainer = build_trainer(cfg, method, CPU, tokenizer, data, tmp_path / "run")
    with torch.no_grad():  # as after some training: B is no longer zero
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    inputs = trainer.data_collator([data.train[i] for i in range(4)])
    batch = PolicyBatch(policy_chosen_logps=torch.zeros(4), chosen_tokens=torch.ones(4))
    trainer.model.train()
    trainer._add_reference(trainer.model, inputs, batch, None)
    ref = torch.cat([batch.ref_chosen_logps, batch.ref_rejected_logps])
    with torch.no_grad():
        base = forward_logps(load_base(cfg.model, cfg.cache_dir, CPU), inputs)[0]
        policy = forward_logps(trainer.model, inputs)[0]
    torch.testing.assert_close(ref, base, rtol=0, atol=1e-5)
    assert (policy - base).abs().max() > 0.1  # the policy did move: the check can fail


def _loss_curve(cfg) -> list[float]:
    run_training(cfg)
    client = MlflowClient(cfg.tracking.uri)
    run_id = (Path(cfg.output_dir) / "mlflow_run_id").read_text().strip()
    history = sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)
    return [m.value for m in history]


def test_online_and_cached_reference_train_identically(pairs, tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    curves = {}
    for mode in ("online", "cached"):
        cache = fresh_cache(tmp_path / f"cache-{mode}", cache_dir)
        cfg = _cfg(
            pairs,
            tmp_path / mode,
            cache,
            f"train.reference={mode}",
            "train.max_steps=4",
            "optimizer.lr=1e-2",
            "optimizer.warmup_ratio=0",
            f"tracking.uri={db}",
        )
        curves[mode] = _loss_curve(cfg)
    online, cached = curves["online"], curves["cached"]
    assert len(online) == len(cached) == 4
    assert online == pytest.approx(cached, abs=1e-5)
    assert online[0] == pytest.approx(math.log(2), abs=1e-6)  # step 1: policy = reference
    assert min(online[1:]) < math.log(2) - 1e-3  # then the policy leaves the reference


def test_cache_hands_back_each_rows_own_pair(pairs, tmp_path, cache_dir):
    """Rows whose pair the cache stores swapped and rows it does not: the computed (miss) and
    the reloaded (hit) entries both equal the bare base's log-probs, row by row, although the
    policy's adapter has moved (the cache is computed as pi_ref, not as the policy)."""
    cache = fresh_cache(tmp_path / "cache", cache_dir)
    cfg = _cfg(pairs, tmp_path / "run", cache, "train.reference=cached")
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = prepare_data(cfg, get_method(cfg.method), tokenizer)
    swap = swapped(data.train)
    assert swap.any() and not swap.all(), swap  # both kinds of row are present
    rows = [data.train[i] for i in range(len(data.train))]
    inputs = Collator(tokenizer.pad_token_id, pairs=True)(rows)
    with torch.no_grad():
        base = forward_logps(load_base(cfg.model, cfg.cache_dir, CPU), inputs)[0]
    chosen, rejected = base[: len(rows)], base[len(rows) :]
    assert (chosen - rejected).abs().min() > 1e-3  # a swap would show
    policy = load_policy(cfg.model, cfg.cache_dir, CPU)
    with torch.no_grad():  # a moved policy: pi_ref must still be the base
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    load_or_compute = reference_fn(cfg, data, tokenizer.pad_token_id)
    for attempt in ("miss", "hit"):
        got_chosen, got_rejected = load_or_compute(policy)["train"]
        assert data.counts["refcache/hit"] == (attempt == "hit")
        torch.testing.assert_close(got_chosen, chosen, rtol=0, atol=1e-4, msg=attempt)
        torch.testing.assert_close(got_rejected, rejected, rtol=0, atol=1e-4, msg=attempt)
