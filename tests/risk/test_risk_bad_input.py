"""Bad preflight/regulariser input fails with one line naming the config key."""

from __future__ import annotations

import pytest
import torch
import transformers

from alignment.risk import AlignGuard, RiskInputError, estimate_subspace, select_parameters
from alignment.risk.safety import pair_batches


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_pattern_matching_nothing(tiny_risk):
    with pytest.raises(RiskInputError) as err:
        select_parameters(tiny_risk.model, ["*.layers.1.self_attn.*lora_*", "*nope*"])
    text = one_line(err)
    assert "risk.parameter_names" in text and "'*nope*'" in text and "lora_A" in text


def test_scale_guard_names_the_count_and_the_option(tiny_risk):
    """Every LoRA factor of model=tiny (its trainable count, n > 600) against max_parameters=600."""
    n = sum(p.numel() for p in tiny_risk.model.parameters() if p.requires_grad)
    with pytest.raises(RiskInputError) as err:
        select_parameters(tiny_risk.model, ["*lora_*"], max_parameters=600)
    text = one_line(err)
    assert f"selects {n:,} parameters" in text and "risk.max_parameters=600" in text
    assert "restrict risk.parameter_names" in text


def test_safety_dataset_without_pairs(tiny_risk):
    empty = tiny_risk.train.select([])
    with pytest.raises(RiskInputError) as err:
        pair_batches(tiny_risk.model, empty, tiny_risk.pad_token_id, source="risk.safety (x.jsonl)")
    assert one_line(err) == "risk.safety (x.jsonl): the safety dataset has no preference pairs"


def test_alignguard_without_lora_modules():
    """A model without an adapter: the selected parameters are base weights, not LoRA factors."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    sel = select_parameters(model, ["*.layers.-1.self_attn.v_proj.*"])
    n = sel.numel
    with pytest.raises(RiskInputError) as err:
        AlignGuard(sel.names, sel.params, torch.zeros(n, 1), torch.ones(1), torch.ones(n))
    text = one_line(err)
    assert "regularizer=alignguard needs LoRA modules" in text and "v_proj.weight" in text
    with pytest.raises(RiskInputError, match="regularizer.alpha"):
        AlignGuard(["x.lora_A.w"], sel.params, torch.zeros(n, 1), torch.ones(1), torch.ones(n),
                   alpha=1.5)  # fmt: skip


def test_non_finite_fisher(tiny_risk):
    t = tiny_risk

    def nan_loss(model, batch):
        return t.safety_loss(model, batch) * float("nan")

    with pytest.raises(RiskInputError) as err:
        estimate_subspace(t.model, t.selection, t.safety, nan_loss, max_samples=4, progress=False)
    text = one_line(err)
    assert "risk.parameter_names: the empirical Fisher has 2048 non-finite entries" in text
    assert t.selection.names[0] in text
