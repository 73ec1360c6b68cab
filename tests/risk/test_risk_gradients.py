"""Per-sample gradients on model=tiny: vmap, loop and plain autograd agree; auto picks a backend
that works; the selection and the artifacts carry what the preflight computed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignment.risk import (
    RiskInputError,
    assess,
    estimate_subspace,
    per_sample_gradients,
    select_parameters,
)
from alignment.risk.artifacts import write_artifacts
from alignment.risk.gradients import math_attention, take


def direct_rows(t, rows: int) -> torch.Tensor:
    """Row i = d safety_loss(pair i) / d theta by ordinary autograd, one pair at a time."""
    out = []
    t.model.eval()
    batch = t.safety[0]
    with math_attention():
        for i in range(rows):
            loss = t.safety_loss(t.model, take(batch, i, i + 1))
            grads = torch.autograd.grad(loss, t.selection.params, allow_unused=True)
            out.append(t.selection.flatten(grads))
    t.model.train()
    return torch.stack(out)


@pytest.mark.parametrize("backend", ["vmap", "loop"])
def test_rows_are_the_per_pair_gradients(tiny_risk, backend):
    t = tiny_risk
    G, used = per_sample_gradients(
        t.model, t.selection, t.safety, t.safety_loss, max_samples=11, backend=backend,
        progress=False,
    )  # fmt: skip
    assert used == backend and G.shape == (11, t.selection.numel) and G.dtype == torch.float32
    torch.testing.assert_close(G[:8], direct_rows(t, 8), rtol=1e-5, atol=1e-7)
    # Rows 8..10 come from the second batch: they differ from the first batch's rows.
    assert not torch.allclose(G[8], G[0])
    # Distinct pairs give distinct gradients; LoRA A and B both receive them (B was perturbed).
    a_cols = [s for s in t.selection.slices if "lora_A" in s.name][0]
    assert G[:, a_cols.start : a_cols.end].abs().sum() > 0


def test_auto_picks_vmap_on_tiny_and_falls_back_to_the_loop(tiny_risk):
    t = tiny_risk
    _, used = per_sample_gradients(t.model, t.selection, t.safety, t.safety_loss, max_samples=4)
    assert used == "vmap"

    def item_loss(model, batch):  # .item() is data-dependent: vmap cannot trace it
        loss = t.safety_loss(model, batch)
        return loss * (1.0 if loss.item() > -1 else 2.0)

    G, used = per_sample_gradients(t.model, t.selection, t.safety, item_loss, max_samples=4)
    assert used == "loop"
    torch.testing.assert_close(G, direct_rows(t, 4), rtol=1e-5, atol=1e-7)


def test_last_layer_pattern_and_model_order(tiny_risk):
    """model=tiny has layers 0 and 1: 'layers.-1.' selects layer 1's four attention LoRA pairs
    (q, k, v, o; A 4x16 and B 16x4 each: 8 x 64 = 512 values) in the model's own order."""
    sel = select_parameters(tiny_risk.model)
    assert len(sel.names) == 8 and sel.numel == 512
    assert all(".layers.1.self_attn." in n for n in sel.names)
    model_order = [n for n, _ in tiny_risk.model.named_parameters() if n in set(sel.names)]
    assert sel.names == model_order
    assert [s.end - s.start for s in sel.slices] == [64] * 8
    first = select_parameters(tiny_risk.model, ["*.layers.-2.self_attn.q_proj.lora_A*"])
    assert first.names == ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"]
    with pytest.raises(RiskInputError, match="layers.-3 but the model has 2"):
        select_parameters(tiny_risk.model, ["*.layers.-3.*"])


def test_artifacts(tiny_risk, tmp_path):
    t = tiny_risk
    sub = estimate_subspace(t.model, t.selection, t.safety, t.safety_loss, progress=False)
    report = assess(t.model, t.selection, sub, t.ft, t.ft_loss, learning_rate=0.05)
    paths = write_artifacts(report, tmp_path, planned_steps=200)
    assert sorted(p.name for p in paths) == ["forecast.png", "preflight.json", "sensitivity.png"]
    for p in paths[:2]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    data = json.loads((tmp_path / "preflight.json").read_text())
    assert data["rank"] == sub.rank and data["eigenvalues"] == sub.eigenvalues.tolist()
    assert data["forecast"]["estimated_loss"] == report.forecast.estimated_loss.tolist()
    assert data["collapse_step"] == report.forecast.collapse_step and data["planned_steps"] == 200
    assert data["metrics"]["risk/overlap"] == report.overlap.ratio
    assert len(data["top_weights"]) == 256 and data["samples"] == sub.samples == 24


def test_fresh_adapter_is_its_own_reference(tiny_risk, cache_dir):
    """With every LoRA B zero the adapter adds exactly 0, so the reference forward is skipped:
    the loss is log 2 (DPO at its start) and the gradients equal those against the explicit
    adapter-disabled reference log-probs, up to float rounding: the explicit reference comes from
    a no-grad forward, which may sum in another order than the grad-mode one (on some rows of
    the shipped pairs the gradients differ by 2e-7)."""
    from alignment.risk.safety import is_own_reference, pair_batches, pair_logps

    t = tiny_risk
    saved = {n: p.detach().clone() for n, p in t.model.named_parameters() if "lora_B" in n}
    try:
        with torch.no_grad():
            for n, p in t.model.named_parameters():
                if "lora_B" in n:
                    p.zero_()
        assert is_own_reference(t.model)
        fresh = pair_batches(t.model, t.train.select(range(6)), t.pad_token_id, batch_size=6)
        assert "ref_logps" not in fresh[0]
        explicit = dict(fresh[0])
        with torch.no_grad(), t.model.disable_adapter():
            explicit["ref_logps"] = pair_logps(t.model, explicit)
        assert t.safety_loss(t.model, fresh[0]).item() == pytest.approx(math.log(2), abs=1e-6)
        G1, _ = per_sample_gradients(t.model, t.selection, fresh, t.safety_loss, progress=False)
        G2, _ = per_sample_gradients(t.model, t.selection, [explicit], t.safety_loss)
        torch.testing.assert_close(G1, G2, rtol=1e-5, atol=1e-6)
        assert G1.abs().max() > 1e-3  # the tolerance is far below the gradients themselves
    finally:
        with torch.no_grad():
            for n, p in t.model.named_parameters():
                if n in saved:
                    p.copy_(saved[n])
    assert not is_own_reference(t.model)
