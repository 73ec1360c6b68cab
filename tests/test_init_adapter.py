"""`model.init_adapter`: a run starts from a saved adapter, and pi_ref is that adapter's policy.

The init adapter here is built by hand: the tiny model's LoRA with every A and B drawn at random
(std 1; B is not zero, so the adapter moves the log-probs by whole nats) and dropout 0.1 (so
the reference pass would be random if the frozen copy kept its dropout). Expected values come
from an independent load of the same directory with peft's own `PeftModel.from_pretrained` in
eval mode, the way evaluate.py loads an adapter.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model

from alignment.data.collate import Collator
from alignment.data.prepare import prepare_data
from alignment.forward import forward_logps
from alignment.init_adapter import InitAdapterError, adapter_fingerprint, resolve_init_adapter
from alignment.methods import PolicyBatch, get_method
from alignment.models import load_base, load_policy, load_tokenizer
from alignment.models.reference import REFERENCE_ADAPTER, reference_mode
from alignment.pipeline import build_trainer
from alignment.refcache import cache_key, data_splits
from bench.refcache_grid import fresh_cache, write_flagged_pairs
from tests.conftest import compose_cfg

CPU = torch.device("cpu")
DROPOUT = 0.1


def random_adapter(cfg, path, seed: int):
    """A saved LoRA adapter of the tiny model's shape with random A and B (std 1)."""
    torch.manual_seed(seed)
    lora = PeftLoraConfig(
        r=cfg.model.lora.r,
        lora_alpha=cfg.model.lora.alpha,
        lora_dropout=DROPOUT,
        target_modules=list(cfg.model.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(load_base(cfg.model, cfg.cache_dir, CPU), lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 1.0)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("init_adapter")
    data = write_flagged_pairs(tmp / "pairs.jsonl", 12)
    base = compose_cfg(_overrides(data), tmp / "out", cache_dir)
    adapters = [random_adapter(base, tmp / f"adapter{s}", seed=s) for s in (1, 2)]
    return tmp, data, adapters


def _overrides(data, *extra: str) -> list[str]:
    return [
        "model=tiny",
        f"model.lora.dropout={DROPOUT}",
        "method=dpo",
        "dataset=local",
        f"dataset.path={data}",
        "train.batch_size=2",
        "train.samples=0",
        "tracking.enabled=false",
        *extra,
    ]


def _cfg(setup, cache_dir, adapter, *extra: str):
    tmp, data, _ = setup
    overrides = _overrides(data, *([f"model.init_adapter={adapter}"] if adapter else []), *extra)
    return resolve_init_adapter(compose_cfg(overrides, tmp / "out", cache_dir))


def _batch(cfg, tokenizer, n: int = 4) -> tuple[dict, object]:
    data = prepare_data(cfg, get_method(cfg.method), tokenizer)
    rows = [data.train[i] for i in range(n)]
    return Collator(tokenizer.pad_token_id, pairs=True)(rows), data


def _init_policy_logps(cfg, adapter, batch) -> torch.Tensor:
    """The init adapter's policy, loaded independently (peft, eval mode, as evaluate.py)."""
    model = PeftModel.from_pretrained(load_base(cfg.model, cfg.cache_dir, CPU), str(adapter))
    model.eval()
    with torch.no_grad():
        return forward_logps(model, batch)[0]


def _base_logps(cfg, batch) -> torch.Tensor:
    with torch.no_grad():
        return forward_logps(load_base(cfg.model, cfg.cache_dir, CPU), batch)[0]


def test_training_starts_from_the_init_adapter(setup, cache_dir):
    """Step 0: the trainable adapter is the init adapter (weights and logits equal)."""
    _, _, (adapter, _) = setup
    cfg = _cfg(setup, cache_dir, adapter)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    batch, _ = _batch(cfg, tokenizer)
    policy = load_policy(cfg.model, cfg.cache_dir, CPU)
    assert policy.active_adapter == "default"
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)
    assert not any(REFERENCE_ADAPTER in n for n in trainable)
    policy.eval()
    with torch.no_grad():
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    expected = PeftModel.from_pretrained(load_base(cfg.model, cfg.cache_dir, CPU), str(adapter))
    expected.eval()
    with torch.no_grad():
        want = expected(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(logits.logits, want.logits, rtol=0, atol=1e-6)
    base = load_base(cfg.model, cfg.cache_dir, CPU)
    with torch.no_grad():
        bare = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert (bare.logits - want.logits).abs().max() > 0.1  # the adapter does change the model


def test_reference_pass_is_the_init_policy_not_the_base(setup, cache_dir):
    """Inside reference_mode the (moved, train-mode) policy computes the init adapter's
    log-probs exactly, with no dropout; outside it is the moved policy again, trainable."""
    _, _, (adapter, _) = setup
    cfg = _cfg(setup, cache_dir, adapter)
    batch, _ = _batch(cfg, load_tokenizer(cfg.model, cfg.cache_dir))
    want, base = _init_policy_logps(cfg, adapter, batch), _base_logps(cfg, batch)
    assert (want - base).abs().max() > 0.5  # nats: the two candidates for pi_ref differ
    policy = load_policy(cfg.model, cfg.cache_dir, CPU)
    policy.train()  # as in a training step: the trainable adapter's dropout is on
    with torch.no_grad():  # a training step has moved the trainable adapter away from init
        for name, p in policy.named_parameters():
            if "lora_B.default" in name:
                p.add_(1.0)
    for _ in range(2):  # twice: dropout on the reference copy would make the two differ
        with torch.no_grad(), reference_mode(policy):
            ref = forward_logps(policy, batch)[0]
        torch.testing.assert_close(ref, want, rtol=0, atol=1e-4)
    policy.eval()
    with torch.no_grad():
        moved = forward_logps(policy, batch)[0]
    assert (moved - want).abs().max() > 0.1  # the block restored the trained adapter
    grads = {n: p.requires_grad for n, p in policy.named_parameters() if "lora_" in n}
    assert all(v == (".default." in n) for n, v in grads.items())


@pytest.mark.parametrize("reference", ["online", "cached"])
def test_trainer_reference_equals_the_init_policy(setup, cache_dir, tmp_path, reference):
    """Both reference paths of the trainer (the online forward in `_add_reference` and the
    shared cache attached to the data) give the init adapter's policy log-probs."""
    _, _, (adapter, _) = setup
    cache = fresh_cache(tmp_path / "cache", cache_dir)
    cfg = _cfg(setup, cache, adapter, f"train.reference={reference}")
    cfg = dataclasses.replace(cfg, output_dir=str(tmp_path / "run"))
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    method = get_method(cfg.method)
    data = prepare_data(cfg, method, tokenizer)
    assert (data.reference is not None) == (reference == "cached")
    trainer = build_trainer(cfg, method, CPU, tokenizer, data, tmp_path / "run")
    inputs = trainer.data_collator([data.train[i] for i in range(4)])
    assert ("ref_chosen_logps" in inputs) == (reference == "cached")
    batch = PolicyBatch(policy_chosen_logps=torch.zeros(4), chosen_tokens=torch.ones(4))
    trainer.model.train()
    trainer._add_reference(trainer.model, inputs, batch, None)
    plain = {k: v for k, v in inputs.items() if not k.startswith("ref_")}
    want = _init_policy_logps(cfg, adapter, plain)
    got = torch.cat([batch.ref_chosen_logps, batch.ref_rejected_logps])
    torch.testing.assert_close(got.float(), want, rtol=0, atol=1e-4)


def test_cache_key_follows_the_init_adapters_weights(setup, cache_dir, tmp_path):
    """One key per reference model: none, adapter 1, adapter 2 differ; a copy of adapter 1 in
    another directory (same weights) shares adapter 1's key."""
    _, _, (one, two) = setup
    copy = shutil.copytree(one, tmp_path / "elsewhere")
    tokenizer = None
    keys = {}
    for name, adapter in (("none", None), ("one", one), ("two", two), ("copy", copy)):
        cfg = _cfg(setup, cache_dir, adapter)
        tokenizer = tokenizer or load_tokenizer(cfg.model, cfg.cache_dir)
        data = prepare_data(cfg, get_method(cfg.method), tokenizer)
        keys[name] = cache_key(cfg, data_splits(data))
    assert len({keys["none"], keys["one"], keys["two"]}) == 3, keys
    assert keys["copy"] == keys["one"]
    assert adapter_fingerprint(str(one)) != adapter_fingerprint(str(two))


def test_an_adapter_of_another_shape_is_one_line(setup, cache_dir):
    _, data, (adapter, _) = setup
    tmp = setup[0]
    overrides = _overrides(data, f"model.init_adapter={adapter}", "model.lora.r=8")
    cfg = compose_cfg(overrides, tmp / "out", cache_dir)
    with pytest.raises(InitAdapterError) as err:
        resolve_init_adapter(cfg)
    message = str(err.value)
    assert "\n" not in message and "model.lora.r=8 (the adapter has 4)" in message


def test_4bit_base_reference_is_the_init_policy(tmp_path, cache_dir):
    """On a bitsandbytes NF4 base the frozen copy gives the init adapter's policy too (a merge
    into the 4-bit weights would re-quantise it); peft loads both adapters onto Linear4bit."""
    data = write_flagged_pairs(tmp_path / "pairs.jsonl", 6)
    fp32 = compose_cfg(_overrides(data, "model.tiny_hidden=32"), tmp_path / "o", cache_dir)
    adapter = random_adapter(fp32, tmp_path / "adapter", seed=3)
    extra = ("model.tiny_hidden=32", "model.quantization=4bit", f"model.init_adapter={adapter}")
    cfg = resolve_init_adapter(compose_cfg(_overrides(data, *extra), tmp_path / "o", cache_dir))
    batch, _ = _batch(cfg, load_tokenizer(cfg.model, cfg.cache_dir))
    policy = load_policy(cfg.model, cfg.cache_dir, CPU)
    assert "Linear4bit" in {type(m).__name__ for m in policy.modules()}
    policy.train()
    with torch.no_grad(), reference_mode(policy):
        ref = forward_logps(policy, batch)[0]
    expected = PeftModel.from_pretrained(load_base(cfg.model, cfg.cache_dir, CPU), str(adapter))
    expected.train()  # the same 4-bit kernels as the reference pass; dropout off by hand
    for module in expected.modules():
        if hasattr(module, "lora_dropout"):
            module.lora_dropout["default"] = torch.nn.Identity()
    with torch.no_grad():
        want = forward_logps(expected, batch)[0]
        with expected.disable_adapter():
            base = forward_logps(expected, batch)[0]
    torch.testing.assert_close(ref, want, rtol=0, atol=1e-4)
    assert (want - base).abs().max() > 0.5
