"""SteeredModel (the MAC wrapper the Trainer sees): small state dict, base model on demand,
save/load through build_mac_model, with and without LoRA alongside."""

from __future__ import annotations

import pytest
import torch

from alignment.models.mac import build_mac_model
from tests.conftest import compose_cfg


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, cache_dir):
    return compose_cfg(["model=tiny"], tmp_path_factory.mktemp("run"), cache_dir)


def x():
    return torch.randint(5, 300, (2, 9), generator=torch.Generator().manual_seed(1))


def build(cfg, lora: bool, **kw):
    torch.manual_seed(0)
    circuit = {"layers": [1], "head_dim": 8}
    cpu = torch.device("cpu")
    return build_mac_model(cfg.model, cfg.cache_dir, cpu, circuit=circuit, lora=lora, **kw)


@pytest.mark.parametrize("lora", [False, True])
def test_trainable_parameters_and_state_dict(cfg, lora):
    model = build(cfg, lora)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("extension.")}
    assert all(n.startswith("extension.") or ("lora_" in n and lora) for n in trainable)
    keys = set(model.state_dict())
    assert keys == {n for n, _ in model.named_parameters() if n.startswith("extension.")} | {
        n for n, _ in model.named_parameters() if "lora_" in n
    }
    assert not any("embed_tokens" in k or k.endswith("mlp.up_proj.weight") for k in keys)


@pytest.mark.parametrize("lora", [False, True])
def test_save_load_and_the_base_model(cfg, lora, tmp_path):
    model = build(cfg, lora).eval()
    with torch.no_grad():
        if lora:  # make the LoRA matter: B starts at zero
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_()
        steered = model(x()).logits
        with model.disable_adapter():
            base = model(x()).logits
        assert torch.equal(model(x()).logits, steered)  # re-attached after the block
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "mac_circuit.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_config.json").is_file() == lora
    cpu, saved = torch.device("cpu"), tmp_path / "adapter"
    loaded = build_mac_model(
        cfg.model, cfg.cache_dir, cpu, circuit=None, lora=lora, saved=saved, trainable=False
    ).eval()
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x()).logits, steered)
        with loaded.disable_adapter():
            torch.testing.assert_close(loaded(x()).logits, base)


def test_trainer_style_checkpoint_round_trip(cfg):
    """Trainer._save stores state_dict(); _load_from_checkpoint calls load_state_dict(sd, False)."""
    a, b = build(cfg, lora=True), build(cfg, lora=True)
    with torch.no_grad():
        for p in a.extension.parameters():
            p.add_(1.0)
    result = b.load_state_dict(a.state_dict(), False)
    assert not result.unexpected_keys and not result.missing_keys
    assert b._keys_to_ignore_on_save is None  # the Trainer reads it after loading
    with torch.no_grad():
        assert torch.equal(a(x()).logits, b(x()).logits)
