"""AlignX-repro experts: prefixes, task vectors and expert mixing (alignment/alignx/).

The mixing tests compare against independent computations: peft's own forward with one adapter
active (one-hot coefficients), and a base model whose weights were edited to
W + sum_a c_a * scaling_a * B_a A_a (task arithmetic) and run without adapters.
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
import transformers

from alignment.alignx.mixing import ExpertMix, mix_logits, one_hot_coeffs
from alignment.alignx.prefixes import COT_PREFIX, expert_prefix, inject
from alignment.alignx.task_vectors import (
    apply_task_vector,
    lora_layers,
    lora_task_vector,
    task_vector,
)
from alignment.data.types import PreferenceExample, Turn

AXES = ["helpfulness", "harmlessness", "honesty"]


def experts_model(seed: int = 0) -> peft.PeftModel:
    """A 2-layer Llama with three LoRA experts whose B matrices are random (not zero)."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    base = transformers.LlamaForCausalLM(config).eval()
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "down_proj"])
    model = peft.get_peft_model(base, lora, adapter_name=AXES[0])
    for name in AXES[1:]:
        model.add_adapter(name, lora)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for name in AXES:
                layer.lora_B[name].weight.normal_(std=0.5)
    return model.eval()


X = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(5))


# -- prefixes -------------------------------------------------------------------------------------
def test_prefix_styles_and_injection_into_the_last_user_turn():
    assert expert_prefix("honesty", "axis") == "[HONEST]"
    assert expert_prefix("harmlessness", "cot") == COT_PREFIX
    assert expert_prefix("helpfulness", "axis_cot") == f"[HELPFUL] {COT_PREFIX}"
    assert expert_prefix("honesty", "none") == ""
    with pytest.raises(ValueError, match="alignx.prefix"):
        expert_prefix("honesty", "system")
    ex = PreferenceExample(
        (Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "why?")), "because", ""
    )
    out = inject(ex, "[HONEST]")
    assert [t.content for t in out.prompt] == ["hi", "hello", "[HONEST] why?"]
    assert inject(ex, "") is ex


# -- task vectors ---------------------------------------------------------------------------------
def test_gamma_0_returns_the_base_weights_exactly():
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(4, 4, generator=g), "b": torch.randn(4, generator=g)}
    adapted = {k: v + torch.randn(v.shape, generator=g) for k, v in base.items()}
    tau = task_vector(base, adapted)
    out = apply_task_vector(base, tau, gamma=0.0)
    assert all(torch.equal(out[k], base[k]) for k in base)
    one = apply_task_vector(base, tau, gamma=1.0)
    torch.testing.assert_close(one["w"], adapted["w"])
    half = apply_task_vector(base, tau, gamma=0.5)
    torch.testing.assert_close(half["b"], base["b"] + 0.5 * (adapted["b"] - base["b"]))


def test_task_vector_checks_names_and_shapes():
    with pytest.raises(ValueError, match="names differ"):
        task_vector({"a": torch.zeros(1)}, {"b": torch.zeros(1)})
    with pytest.raises(ValueError, match="shapes"):
        task_vector({"a": torch.zeros(1)}, {"a": torch.zeros(2)})
    with pytest.raises(ValueError, match="lacks"):
        apply_task_vector({"a": torch.zeros(1)}, {"b": torch.zeros(1)}, 1.0)


def test_lora_task_vector_equals_merged_minus_base():
    model = experts_model()
    model.set_adapter("honesty")
    tau = lora_task_vector(model, "honesty")
    base = {k: v.detach().clone() for k, v in model.named_parameters() if k in tau}
    merged = copy.deepcopy(model).merge_and_unload(adapter_names=["honesty"])
    merged_w = dict(merged.named_parameters())
    for key, delta in tau.items():
        plain = key.replace("base_model.model.", "").replace(".base_layer", "")
        torch.testing.assert_close(base[key] + delta, merged_w[plain].detach())
    with pytest.raises(ValueError, match="no LoRA adapter named"):
        lora_task_vector(model, "nope")


# -- mixing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_one_hot_coefficients_equal_peft_with_that_adapter(axis):
    model = experts_model()
    model.set_adapter(AXES[axis])
    with torch.no_grad():
        expected = model(X).logits
        with ExpertMix(model, AXES) as mix:
            mix.coeffs = one_hot_coeffs(torch.tensor([axis, axis]), 3)
            got = model(X).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_adapter_mixing_equals_task_arithmetic_on_the_weights():
    """Per row b: y = W x + sum_a c[b, a] tau_a x; compared with edited base weights."""
    model = experts_model()
    coeffs = torch.tensor([[0.2, 0.5, 0.3], [1.5, 0.0, -0.5]])
    with torch.no_grad(), ExpertMix(model, AXES) as mix:
        mix.coeffs = coeffs
        got = model(X).logits
    taus = [lora_task_vector(model, a) for a in AXES]
    for row in range(2):
        edited = copy.deepcopy(model)
        params = dict(edited.named_parameters())
        with torch.no_grad():
            for a, tau in enumerate(taus):
                for key, delta in tau.items():
                    params[key].add_(coeffs[row, a] * delta)
            with edited.disable_adapter():
                expected = edited(X[row : row + 1]).logits
        torch.testing.assert_close(got[row : row + 1], expected, rtol=1e-4, atol=1e-5)


def test_zero_coefficients_are_the_base_and_exit_restores_peft():
    model = experts_model()
    with torch.no_grad():
        with model.disable_adapter():
            base = model(X).logits
        model.set_adapter("harmlessness")
        peft_out = model(X).logits
        with ExpertMix(model, AXES) as mix:
            mix.coeffs = torch.zeros(3)
            assert torch.equal(model(X).logits, base)
        assert all(not layer._forward_hooks for layer in lora_layers(model).values())
        assert torch.equal(model(X).logits, peft_out)


def test_one_hot_training_sends_each_rows_gradient_to_its_own_expert():
    model = experts_model().train()
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    with ExpertMix(model, AXES) as mix:
        mix.coeffs = one_hot_coeffs(torch.tensor([0, 2]), 3)  # rows use helpfulness, honesty
        model(input_ids=X, labels=X).loss.backward()
    grads = dict.fromkeys(AXES, 0.0)
    for name, p in model.named_parameters():
        for a in AXES:
            if f".{a}." in name and p.grad is not None:
                grads[a] += float(p.grad.abs().sum())
    assert grads["helpfulness"] > 0 and grads["honesty"] > 0
    assert grads["harmlessness"] == 0


def test_mix_logits_by_hand():
    expert = torch.stack([torch.full((2, 1, 2), float(a + 1)) for a in range(3)])  # (3, 2, 1, 2)
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    out = mix_logits(expert, weights)
    torch.testing.assert_close(out[0], torch.ones(1, 2))
    torch.testing.assert_close(out[1], torch.full((1, 2), 0.2 + 0.6 + 1.5))
