"""Gradient accumulation must not change the gradient (as TRL's tests/invariant check): one
micro-batch of 8 and 8 micro-batches of 1 give the same accumulated gradient within 1e-5.

Per-example means (DPO, Factual-DPO, CITA's contrastive term and sequence anchors) are invariant
by construction once the Trainer divides each micro-batch's loss by the window size. Token means
(SFT, DPO's and CITA's NLL terms, CITA's token_full_vocab KL, ORPO's SFT term) are not: a
micro-batch of one short response would weigh its tokens more. The trainer therefore normalises
them by the window's token count (`AlignmentTrainer.get_batch_samples`); the sft, orpo,
dpo_sft_weight and CITA-with-token-terms cases fail without it, and MAC's per-axis token means
fail without the per-axis window counts.
"""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from alignment.data.prepare import prepare_data
from alignment.methods import get_method
from alignment.models import load_tokenizer
from alignment.pipeline import build_trainer
from tests.conftest import compose_cfg


class GradCapture(TrainerCallback):
    """Copies the accumulated LoRA gradients right before the (only) optimizer step."""

    def __init__(self, model) -> None:
        self.model, self.grads = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        named = self.model.named_parameters()
        self.grads = {n: p.grad.detach().clone() for n, p in named if p.requires_grad}


def accumulated_grads(overrides: list[str], batch: int, accum: int, tmp, cache) -> dict:
    cfg = compose_cfg(
        [
            "model=tiny",
            f"train.batch_size={batch}",
            f"train.grad_accum={accum}",
            "train.max_steps=1",
            "train.group_by_length=false",  # the same 8 rows in both layouts
            "train.samples=0",
            "optimizer.max_grad_norm=0",
            "dataset.val_fraction=0",
            *overrides,
        ],
        tmp / f"b{batch}",
        cache,
    )
    torch.manual_seed(0)
    method = get_method(cfg.method)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = (method.prepare_data or prepare_data)(cfg, method, tokenizer)
    trainer = build_trainer(cfg, method, torch.device("cpu"), tokenizer, data, tmp / f"b{batch}")
    capture = GradCapture(trainer.model)
    trainer.add_callback(capture)
    trainer.train()
    return capture.grads


CASES = {
    "sft": ["method=sft"],
    "dpo": ["method=dpo"],
    "dpo_sft_weight": ["method=dpo", "method.sft_weight=1.0"],  # the NLL term is a token mean
    "factual_dpo": ["method=factual_dpo", "method.delta=0"],
    "cita": ["method=cita"],
    "orpo": ["method=orpo"],  # its SFT term is a token mean too
    "simpo": ["method=simpo"],
    "ipo": ["method=ipo"],
    "cita_token_terms": [
        "method=cita",
        "method.kl_estimator=token_full_vocab",
        "method.lambda_kl=0.5",
        "method.lambda_sft=0.5",
    ],
    # per-axis token means (one batch of each axis per row of the batch), circuit gradients
    "mac": ["method=mac", "method.layers=[1]", "method.heatmap=false"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_by_eight_equals_eight_by_one(case, tmp_path, cache_dir):
    whole = accumulated_grads(CASES[case], 8, 1, tmp_path, cache_dir)
    split = accumulated_grads(CASES[case], 1, 8, tmp_path, cache_dir)
    assert whole.keys() == split.keys() and whole
    scale = max(g.abs().max().item() for g in whole.values())
    assert scale > 1e-4, "a zero gradient would make the comparison vacuous"
    worst = max((whole[n] - split[n]).abs().max().item() for n in whole)
    assert worst < 1e-5, f"{case}: max |grad(1x8) - grad(8x1)| = {worst:.3g}"
