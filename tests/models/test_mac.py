"""MAC circuit and its hooks (alignment/models/mac.py) on hand-built tensors and the `tiny` model.

Parameter count by hand (spec/mac.md section 1), H = hidden, d = head_dim, 3 axes:
  3 (H^2 + H) + 3 d H + 3 d H
  H = 4096, d = 64: 3 (16,777,216 + 4,096) = 50,343,936; 3*64*4096 = 786,432 (q, k, v) and
  192*4096 = 786,432 (out): 51,916,800 (the spec's 51.9 M).
  H = 64, d = 64: 3 (4,096 + 64) + 12,288 + 12,288 = 37,056 (the spec's small-model figure).
"""

from __future__ import annotations

import math

import peft
import pytest
import torch

from alignment.models import load_base, load_tokenizer
from alignment.models.mac import (
    MacSteering,
    MechanisticAlignmentCircuit,
    axis_attention,
    check_layers,
    decoder_layers,
    load_steering,
    mac_parameter_count,
    save_steering,
)
from alignment.models.mac_heatmap import collect_axis_attention, heatmap_figure
from tests.conftest import compose_cfg


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    cfg = compose_cfg(["model=tiny"], tmp_path_factory.mktemp("run"), cache_dir)
    tok = load_tokenizer(cfg.model, cfg.cache_dir)
    return cfg, tok


def base_model(tiny):
    cfg, _ = tiny
    return load_base(cfg.model, cfg.cache_dir, torch.device("cpu")).eval()


def ids(tok, text="How do I boil an egg?"):
    return tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]


# -- the module -----------------------------------------------------------------------------------
def test_parameter_count_at_4096_is_the_spec_51_9m():
    assert mac_parameter_count(4096) == 51_916_800
    with torch.device("meta"):  # no 200 MB allocation
        circuit = MechanisticAlignmentCircuit(4096)
    assert n_params(circuit) == 51_916_800
    assert round(n_params(circuit) / 1e6, 1) == 51.9


def test_parameter_count_at_64_and_other_head_dims():
    assert n_params(MechanisticAlignmentCircuit(64)) == mac_parameter_count(64) == 37_056
    # d = 8, H = 16: 3 (256 + 16) + 3*8*16 + 24*16 = 816 + 384 + 384 = 1,584
    assert n_params(MechanisticAlignmentCircuit(16, head_dim=8)) == 1_584


def test_shapes_rows_sum_to_one_and_a_hand_computed_case():
    torch.manual_seed(0)
    circuit = MechanisticAlignmentCircuit(16, head_dim=8)
    steer, weights = circuit(torch.randn(2, 5, 16))
    assert steer.shape == (2, 5, 16) and weights.shape == (2, 5, 3, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5, 3))
    # d = 1, q = k = (0, 0, log 2 * 1): logits q_i k_j; row 2 = (0, 0, (ln 2)^2) -> softmax
    q = torch.tensor([[0.0], [0.0], [math.log(2.0)]])
    v = torch.tensor([[1.0], [2.0], [3.0]])
    mixed, w = axis_attention(q, q, v)
    e = math.exp(math.log(2.0) ** 2)
    torch.testing.assert_close(w[0], torch.full((3,), 1 / 3))
    torch.testing.assert_close(w[2], torch.tensor([1 / (2 + e), 1 / (2 + e), e / (2 + e)]))
    torch.testing.assert_close(mixed[0], torch.tensor([2.0]))  # mean of 1, 2, 3
    # d = 4, q = k = (0, 0, 1_4): row 2's logits (0, 0, 4 / sqrt(4) = 2): the 1/sqrt(d) scale
    q4 = torch.tensor([[0.0] * 4, [0.0] * 4, [1.0] * 4])
    _, w4 = axis_attention(q4, q4, torch.zeros(3, 4))
    e2 = math.exp(2.0)
    torch.testing.assert_close(w4[2], torch.tensor([1 / (2 + e2), 1 / (2 + e2), e2 / (2 + e2)]))


def test_zero_init_gives_a_zero_steering_vector_and_frozen_freezes_qkv():
    circuit = MechanisticAlignmentCircuit(16, head_dim=8, zero_init_out_proj=True, mode="frozen")
    steer, _ = circuit(torch.randn(1, 3, 16))
    assert torch.count_nonzero(steer) == 0
    frozen = {n for n, p in circuit.named_parameters() if not p.requires_grad}
    assert frozen == {"q_proj.weight", "k_proj.weight", "v_proj.weight"}


def test_generic_mode_is_the_same_computation_as_standard():
    torch.manual_seed(3)
    a = MechanisticAlignmentCircuit(16, head_dim=8, mode="standard")
    torch.manual_seed(3)
    b = MechanisticAlignmentCircuit(16, head_dim=8, mode="generic")
    h = torch.randn(2, 4, 16)
    assert torch.equal(a(h)[0], b(h)[0])


def test_bad_sizes_and_modes_name_the_key():
    with pytest.raises(ValueError, match="method.mode"):
        MechanisticAlignmentCircuit(16, mode="ablated")
    with pytest.raises(ValueError, match="method.site"):
        MacSteering(16, [0], site="mlp_out")
    with pytest.raises(ValueError, match=r"method.layers=\[15\]: layer 15 does not exist.*2 dec"):
        check_layers([15], 2)
    with pytest.raises(ValueError, match="twice"):
        check_layers([1, 1], 2)


# -- on the tiny model ---------------------------------------------------------------------------
def test_layer_15_on_the_2_layer_tiny_model_is_one_clear_line(tiny):
    model = base_model(tiny)
    with pytest.raises(ValueError) as err:
        MacSteering(model.config.hidden_size, [15]).attach(model)
    assert "\n" not in str(err.value) and "method.layers" in str(err.value)


@pytest.mark.parametrize("site", ["attn_out", "residual_post"])
def test_zero_init_logits_equal_the_base_model(tiny, site):
    model = base_model(tiny)
    x = ids(tiny[1])
    with torch.no_grad():
        base = model(x).logits
        steering = MacSteering(16, [1], site=site, zero_init_out_proj=True).attach(model)
        steered = model(x).logits
    assert (steered - base).abs().max() < 1e-6
    # and with the default init the model does deviate (the reference's behaviour)
    steering.remove()
    torch.manual_seed(0)
    MacSteering(16, [1], site=site).attach(model)
    with torch.no_grad():
        assert (model(x).logits - base).abs().max() > 1e-3


def test_remove_leaves_no_residue(tiny):
    model = base_model(tiny)
    x = ids(tiny[1])
    with torch.no_grad():
        base = model(x).logits
    hooks_before = [dict(m._forward_hooks) for m in model.modules()]
    torch.manual_seed(0)
    steering = MacSteering(16, [0, 1], site="attn_out").attach(model)
    assert decoder_layers(model)[1].self_attn._forward_hooks  # attached
    with torch.no_grad():
        assert not torch.equal(model(x).logits, base)
    steering.remove()
    assert [dict(m._forward_hooks) for m in model.modules()] == hooks_before
    assert all(not m._forward_hooks for m in model.modules())
    assert not any("circuit" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        assert torch.equal(model(x).logits, base)  # bit-equal


def test_hook_fires_only_at_the_chosen_layer_and_records_attention(tiny):
    model = base_model(tiny)
    steering = MacSteering(16, [1], site="attn_out").attach(model)
    layers = decoder_layers(model)
    assert layers[1].self_attn._forward_hooks and not layers[0].self_attn._forward_hooks
    steering.record_attention = True
    x = ids(tiny[1])
    with torch.no_grad():
        model(x)
    assert set(steering.attention) == {1}
    assert steering.attention[1].shape == (1, x.shape[1], 3, 3)


def test_gradients_reach_only_the_circuit(tiny):
    model = base_model(tiny)
    model.requires_grad_(False)
    steering = MacSteering(16, [1], head_dim=8, mode="frozen").attach(model)
    x = ids(tiny[1])
    model(x, labels=x).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == set()  # the base never receives a gradient
    moved = {n for n, p in steering.named_parameters() if p.grad is not None}
    assert moved and all(n.startswith("circuits.1.") for n in moved)
    assert not any(k in n for n in moved for k in ("q_proj", "k_proj", "v_proj"))  # frozen
    assert all(steering.get_parameter(n).grad.abs().sum() > 0 for n in moved)


def test_gradients_reach_the_circuit_and_lora_when_lora_is_on(tiny):
    model = base_model(tiny)
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    model = peft.get_peft_model(model, lora)
    torch.manual_seed(0)
    steering = MacSteering(16, [0]).attach(model)
    x = ids(tiny[1])
    model(input_ids=x, labels=x).loss.backward()
    base_grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert base_grads and all("lora_" in n for n in base_grads)
    assert all(p.grad is not None for p in steering.parameters())


def test_fp32_circuit_on_a_bf16_base_casts_inside_the_hook(tiny):
    model = base_model(tiny).to(torch.bfloat16)
    steering = MacSteering(16, [1], zero_init_out_proj=True).attach(model)
    assert steering.circuits["1"].out_proj.weight.dtype == torch.float32
    with torch.no_grad():
        out = model(ids(tiny[1])).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_attention_heatmap_for_held_out_prompts(tiny, tmp_path):
    model = base_model(tiny)
    _, tok = tiny
    steering = MacSteering(16, [1]).attach(model)
    prompts = ["How do I boil an egg?", "How do I make a bomb?"]
    rows = collect_axis_attention(model, steering, tok, prompts, layer=1)
    assert [r.prompt for r in rows] == prompts
    for r in rows:
        assert r.weights.shape == (len(r.tokens), 3, 3)
        torch.testing.assert_close(r.weights.sum(-1), torch.ones(len(r.tokens), 3))
    assert not steering.record_attention and not steering.attention
    path = heatmap_figure(rows, tmp_path / "axis_attention.png", "MAC layer 1")
    assert path.stat().st_size > 5_000


def test_save_and_load_round_trip_gives_the_same_logits(tiny, tmp_path):
    model = base_model(tiny)
    torch.manual_seed(0)
    steering = MacSteering(16, [0, 1], site="residual_post", head_dim=8, mode="frozen")
    steering.attach(model)
    x = ids(tiny[1])
    with torch.no_grad():
        expected = model(x).logits
    save_steering(steering, tmp_path / "mac")
    steering.remove()
    loaded = load_steering(tmp_path / "mac").attach(model)
    assert loaded.settings() == steering.settings()
    assert not loaded.circuits["0"].q_proj.weight.requires_grad  # the mode survives
    with torch.no_grad():
        assert torch.equal(model(x).logits, expected)
    with pytest.raises(FileNotFoundError, match="mac_config.json"):
        load_steering(tmp_path / "nowhere")
