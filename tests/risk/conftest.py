"""The risk tests' setting: model=tiny (built as train.py builds it) with LoRA B set non-zero, so
both LoRA factors get gradients and the policy differs from its adapter-disabled reference;
safety pairs and fine-tuning pairs are disjoint slices of the shipped safety preference data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pytest
import torch

from alignment.data.prepare import prepare_data
from alignment.methods import get_method
from alignment.models import load_policy, load_tokenizer
from alignment.risk import select_parameters
from alignment.risk.params import Selection
from alignment.risk.safety import dpo_pair_loss, pair_batches
from tests.conftest import compose_cfg

SAFETY_PAIRS, FT_PAIRS = 24, 24


@dataclass
class TinyRisk:
    model: torch.nn.Module
    selection: Selection
    safety: list[dict]
    ft: list[dict]
    safety_loss: object
    ft_loss: object
    pad_token_id: int
    train: object


@pytest.fixture(scope="module")
def tiny_risk(tmp_path_factory, cache_dir) -> TinyRisk:
    cfg = compose_cfg(
        ["model=tiny", "dataset.max_examples=60"], tmp_path_factory.mktemp("out"), cache_dir
    )
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = prepare_data(cfg, get_method(cfg.method), tokenizer)
    torch.manual_seed(0)
    model = load_policy(cfg.model, cfg.cache_dir, torch.device("cpu"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    ds, pad = data.train, tokenizer.pad_token_id
    safety = pair_batches(model, ds.select(range(SAFETY_PAIRS)), pad, batch_size=8)
    ft_rows = ds.select(range(SAFETY_PAIRS, SAFETY_PAIRS + FT_PAIRS))
    ft = pair_batches(model, ft_rows, pad, batch_size=4)
    return TinyRisk(
        model=model,
        selection=select_parameters(model),
        safety=safety,
        ft=ft,
        safety_loss=partial(dpo_pair_loss, beta=0.1),
        ft_loss=partial(dpo_pair_loss, beta=0.5),
        pad_token_id=pad,
        train=ds,
    )
