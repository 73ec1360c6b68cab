"""The real QLoRA path on CPU: bitsandbytes 4-bit NF4 and 8-bit bases, LoRA backward through
them, and bitsandbytes AdamW8bit, on the tiny model."""

import pytest
import torch

from alignment.models import load_policy
from tests.conftest import compose_cfg


@pytest.mark.parametrize("quant,layer", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantised_base_loads_and_lora_trains(quant, layer, tmp_path, cache_dir):
    # bitsandbytes' CPU 4-bit kernel needs every out-feature count to be a multiple of 32.
    cfg = compose_cfg(
        [
            "model=tiny",
            "model.tiny_hidden=32",
            f"model.quantization={quant}",
            "optimizer=adamw_8bit",
            "train.max_steps=3",
            "train.batch_size=2",
            "train.samples=0",
            f"tracking.uri=sqlite:///{tmp_path}/m.db",
        ],
        tmp_path / "run",
        cache_dir,
    )
    model = load_policy(cfg.model, cfg.cache_dir, torch.device("cpu"))
    kinds = {type(m).__name__ for m in model.modules()}
    assert layer in kinds, kinds
    from alignment.pipeline import run_training

    final = run_training(cfg)
    assert final is not None and torch.isfinite(torch.tensor(final))
    from safetensors.torch import load_file

    trained = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: it moved
