"""The speed-ups change no numbers.

1. Length grouping only changes which examples share a batch (and so how much padding each
   row gets and where `logits_to_keep` starts): every example's chosen and rejected log-probs
   are the same, within 1e-5, under length-grouped batches, random batches and one pair alone.
2. The completion-only LM-head projection (`logits_to_keep`, train.completion_only_logits)
   gives the same log-probs, DPO loss and LoRA gradients as projecting every position.

Both run on model=tiny with LoRA B matrices set non-zero, so the policy differs from the
adapter-disabled reference and the loss is not the constant log 2.

Tolerance: losses and gradients within 1e-5 absolute. A summed log-prob is about -600 here, in
fp32, where neighbouring floats are 6e-5 apart, so log-probs are compared within 1e-5 absolute
plus 1e-6 relative (6e-4 at -600: the rounding of a sum of ~100 fp32 terms). Any real fault
(a response token dropped or duplicated, padding leaking into a row) moves a sum by a whole
token's log-prob, about 5.
"""

from __future__ import annotations

import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from alignment.data.collate import Collator
from alignment.data.prepare import prepare_data
from alignment.forward import forward_logps, logits_to_keep
from alignment.losses import dpo_loss
from alignment.methods import get_method
from alignment.models import load_policy, load_tokenizer
from tests.conftest import compose_cfg

ATOL = 1e-5
LOGP_RTOL = 1e-6  # fp32 sums of ~100 log-probs (see the module docstring)
BATCH = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    """(policy with non-zero LoRA B, prepared train split, collator) on model=tiny."""
    cfg = compose_cfg(
        ["model=tiny", "dataset.max_length=256", "dataset.max_examples=40"],
        tmp_path_factory.mktemp("out"),
        cache_dir,
    )
    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = prepare_data(cfg, get_method(cfg.method), tokenizer)
    model = load_policy(cfg.model, cfg.cache_dir, torch.device("cpu"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.eval()
    return model, data.train, Collator(tokenizer.pad_token_id, pairs=True)


def logps_by_example(model, ds, collate, batches: list[list[int]]) -> torch.Tensor:
    """(N, 2) chosen/rejected log-probs of every example, computed batch by batch."""
    out = torch.full((len(ds), 2), float("nan"), dtype=torch.float64)
    with torch.no_grad():
        for idx in batches:
            logps, _, _ = forward_logps(model, collate([ds[i] for i in idx]), True)
            out[idx, 0], out[idx, 1] = logps[: len(idx)].double(), logps[len(idx) :].double()
    return out


def padding(ds, collate, batches: list[list[int]]) -> int:
    return sum(int((collate([ds[i] for i in idx])["attention_mask"] == 0).sum()) for idx in batches)


def chunk(order: list[int]) -> list[list[int]]:
    return [order[k : k + BATCH] for k in range(0, len(order), BATCH)]


def test_logps_do_not_depend_on_length_grouping(tiny):
    model, ds, collate = tiny
    g = torch.Generator().manual_seed(0)
    grouped = chunk(
        list(LengthGroupedSampler(BATCH, dataset=ds, lengths=ds["length"], generator=g))
    )
    shuffled = chunk(torch.randperm(len(ds), generator=g).tolist())
    alone = [[i] for i in range(len(ds))]  # no padding at all
    assert padding(ds, collate, grouped) < padding(ds, collate, shuffled)  # the test has teeth
    reference = logps_by_example(model, ds, collate, alone)
    for batches in (grouped, shuffled):
        torch.testing.assert_close(
            logps_by_example(model, ds, collate, batches), reference, atol=ATOL, rtol=LOGP_RTOL
        )


def test_completion_only_projection_keeps_loss_and_grads(tiny):
    model, ds, collate = tiny
    batch = collate([ds[i] for i in range(BATCH)])
    prompts = torch.tensor([len(ds[i]["prompt_ids"]) for i in range(BATCH)])
    assert 0 < logits_to_keep(batch, True) < batch["input_ids"].shape[1]  # something is cut
    assert prompts.max() > prompts.min()  # rows whose prompt passes the cut keep extra positions
    with torch.no_grad(), model.disable_adapter():
        ref, _, _ = forward_logps(model, batch, False)
    results = {}
    for completion_only in (True, False):
        model.zero_grad(set_to_none=True)
        logps, n_tokens, _ = forward_logps(model, batch, completion_only)
        out = dpo_loss(logps[:BATCH], logps[BATCH:], ref[:BATCH], ref[BATCH:], beta=0.1)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results[completion_only] = (out.loss.detach(), logps.detach(), n_tokens, grads)
    (loss_on, logps_on, n_on, grads_on), (loss_off, logps_off, n_off, grads_off) = (
        results[True],
        results[False],
    )
    assert abs(loss_on.item() - torch.log(torch.tensor(2.0)).item()) > 1e-3  # not the B = 0 case
    assert abs(loss_on.item() - loss_off.item()) <= ATOL
    torch.testing.assert_close(logps_on, logps_off, atol=ATOL, rtol=LOGP_RTOL)
    assert torch.equal(n_on, n_off)
    for g_on, g_off in zip(grads_on, grads_off, strict=True):
        torch.testing.assert_close(g_on, g_off, atol=ATOL, rtol=1e-4)
