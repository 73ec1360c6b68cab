"""AlignxModel on the `tiny` model: routing, both mixing modes, generation, the base model on
demand and a save/load round trip.

With router-only weights at a tiny temperature the weights are one-hot on the router's argmax,
so both mixing modes must equal peft's own forward (and greedy generate) with that expert alone.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from alignment.alignx.experts import load_experts
from alignment.alignx.mocae import Mocae
from alignment.alignx.model import AlignxModel, MixSettings, load_alignx_model
from alignment.alignx.task_vectors import lora_layers
from alignment.axes import AXES
from alignment.models import load_tokenizer
from tests.conftest import compose_cfg

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, cache_dir):
    cfg = compose_cfg(["model=tiny"], tmp_path_factory.mktemp("run"), cache_dir)
    tok = load_tokenizer(cfg.model, cfg.cache_dir)
    return cfg, tok


def experts(cfg, seed=0):
    torch.manual_seed(seed)
    model = load_experts(cfg.model, cfg.cache_dir, CPU, list(AXES), trainable=False)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for axis in AXES:
                layer.lora_B[axis].weight.normal_(std=0.5)
    return model.eval()


def batch(tok):
    tok.padding_side = "left"
    enc = tok(["How do I boil an egg?", "Why?"], return_tensors="pt", padding=True)
    tok.padding_side = "right"
    return enc["input_ids"], enc["attention_mask"]


def sharp(mix: str) -> MixSettings:
    return MixSettings(tuple(AXES), mix=mix, temperature=1e-6, combine="router")


@pytest.mark.parametrize("mix", ["logits", "adapters"])
def test_one_hot_routing_equals_that_expert_alone(setup, mix):
    cfg, tok = setup
    peft_model = experts(cfg)
    ids, mask = batch(tok)
    model = AlignxModel(peft_model, Mocae(16), sharp(mix)).eval()
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).logits
    chosen = model.last_weights.argmax(-1)
    assert torch.equal(model.last_weights, torch.nn.functional.one_hot(chosen, 3).float())
    model.experts.remove()  # plain peft from here on
    for row, a in enumerate(chosen.tolist()):
        peft_model.set_adapter(AXES[a])
        with torch.no_grad():
            expected = peft_model(input_ids=ids, attention_mask=mask).logits[row]
        torch.testing.assert_close(got[row], expected, rtol=1e-5, atol=1e-5)


def test_soft_weights_logits_mode_is_the_weighted_sum(setup):
    cfg, tok = setup
    ids, mask = batch(tok)
    model = AlignxModel(experts(cfg), Mocae(16), MixSettings(tuple(AXES))).eval()
    with torch.no_grad():
        mixed = model(input_ids=ids, attention_mask=mask).logits
        w = model.last_weights
        assert (w > 0).all() and torch.allclose(w.sum(-1), torch.ones(2))
        singles = []
        for a in range(3):
            model.experts.coeffs = torch.nn.functional.one_hot(torch.tensor(a), 3).float()
            singles.append(model.model(input_ids=ids, attention_mask=mask).logits)
    expected = sum(w[:, a, None, None] * singles[a] for a in range(3))
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mix", ["logits", "adapters"])
def test_greedy_generation_matches_peft_with_the_routed_expert(setup, mix):
    cfg, tok = setup
    peft_model = experts(cfg)
    ids, mask = batch(tok)
    model = AlignxModel(peft_model, Mocae(16), sharp(mix)).eval()
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tok.pad_token_id}
    out = model.generate(input_ids=ids, attention_mask=mask, **kw)
    chosen = model.last_weights.argmax(-1).tolist()
    model.experts.remove()
    for row, a in enumerate(chosen):
        peft_model.set_adapter(AXES[a])
        ref = peft_model.generate(input_ids=ids, attention_mask=mask, **kw)
        n = min(out.shape[1], ref.shape[1])
        assert torch.equal(out[row, :n], ref[row, :n]), (mix, row)


def test_disable_adapter_is_the_base_and_save_load_round_trip(setup, tmp_path):
    cfg, tok = setup
    ids, mask = batch(tok)
    settings = dataclasses.replace(MixSettings(tuple(AXES)), lambda1=1.0, lambda2=0.0)
    model = AlignxModel(experts(cfg), Mocae(16, eps=0.1), settings).eval()
    with torch.no_grad():
        mixed = model(input_ids=ids, attention_mask=mask).logits
        with model.disable_adapter():
            base = model(input_ids=ids, attention_mask=mask).logits
        assert not torch.allclose(base, mixed)
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, mixed)
    model.save_pretrained(tmp_path / "adapter")
    loaded = load_alignx_model(cfg.model, cfg.cache_dir, CPU, tmp_path / "adapter")
    assert loaded.settings == settings
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits, mixed)
    with pytest.raises(FileNotFoundError, match="alignx.json"):
        load_alignx_model(cfg.model, cfg.cache_dir, CPU, tmp_path)
