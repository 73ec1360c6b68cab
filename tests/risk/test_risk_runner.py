"""Run-level pieces: the method loss used for the fine-tuning side, the subspace cache, the gate."""

from __future__ import annotations

import pytest
import torch

from alignment.losses import dpo_loss
from alignment.methods import DpoConfig, get_method
from alignment.risk import estimate_subspace
from alignment.risk.runner import (
    cached_subspace,
    finetune_batches,
    gate_verdict,
    method_loss,
    subspace_key,
)


def test_method_loss_is_the_trainers_dpo_loss(tiny_risk):
    """method=dpo on a collated batch: sigmoid DPO of the policy against the adapter-disabled
    reference (the LoRA B factors are non-zero here), and against cached reference columns."""
    from alignment.forward import forward_logps

    t = tiny_risk
    cfg = DpoConfig(name="dpo", beta=0.3)
    batches = finetune_batches(
        t.train, t.pad_token_id, pairs=True, batch_size=4, count=2, seed=0, device="cpu"
    )
    assert len(batches) == 2 and batches[0]["index"].shape == (4,)
    batch = batches[0]
    with torch.no_grad():
        logps, _, _ = forward_logps(t.model, batch)
        with t.model.disable_adapter():
            ref, _, _ = forward_logps(t.model, batch)
    expected = dpo_loss(logps[:4], logps[4:], ref[:4], ref[4:], beta=0.3).loss
    loss_fn = method_loss(get_method(cfg), cfg)
    assert loss_fn(t.model, batch).item() == pytest.approx(expected.item(), abs=1e-6)
    cached = {**batch, "ref_chosen_logps": ref[:4] + 1.0, "ref_rejected_logps": ref[4:]}
    shifted = dpo_loss(logps[:4], logps[4:], ref[:4] + 1.0, ref[4:], beta=0.3).loss
    assert loss_fn(t.model, cached).item() == pytest.approx(shifted.item(), abs=1e-6)


def test_subspace_cache_round_trip_and_key(tiny_risk, tmp_path):
    t = tiny_risk
    calls = []

    def compute():
        calls.append(1)
        return estimate_subspace(
            t.model, t.selection, t.safety, t.safety_loss, max_samples=12, progress=False
        )

    rows = t.train.select(range(12))
    key = subspace_key(["tiny"], t.selection, rows, {"max_samples": 12})
    first, hit1 = cached_subspace(tmp_path / f"{key}.safetensors", compute)
    second, hit2 = cached_subspace(tmp_path / f"{key}.safetensors", compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    for name in ("eigenvalues", "eigenvectors", "fisher_diagonal", "top_weight_indices"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name), rtol=0, atol=0)
    assert second.slices == first.slices and second.module_scores == first.module_scores
    assert (second.samples, second.backend, second.rank) == (12, first.backend, first.rank)
    # The key moves with the settings, the safety rows and the parameters' values (the seed).
    assert subspace_key(["tiny"], t.selection, rows, {"max_samples": 13}) != key
    assert (
        subspace_key(["tiny"], t.selection, t.train.select(range(1, 13)), {"max_samples": 12})
        != key
    )
    p = t.selection.params[0]
    with torch.no_grad():
        p.add_(1.0)
    try:
        assert subspace_key(["tiny"], t.selection, rows, {"max_samples": 12}) != key
    finally:
        with torch.no_grad():
            p.sub_(1.0)


@pytest.mark.parametrize(
    ("collapse", "planned", "gate", "verdict"),
    [
        (None, 200, "skip", "pass"),  # no collapse forecast
        (150, 200, "skip", "skip"),  # within the planned steps
        (200, 200, "skip", "skip"),  # at the last planned step: still within
        (201, 200, "skip", "pass"),  # after the run ends
        (150, 200, "warn", "warn"),
        (150, 200, "off", "pass"),
    ],
)
def test_gate_verdict(collapse, planned, gate, verdict):
    assert gate_verdict(collapse, planned, gate) == verdict


def test_gate_rejects_unknown_mode():
    with pytest.raises(ValueError, match="risk.gate"):
        gate_verdict(1, 2, "maybe")
