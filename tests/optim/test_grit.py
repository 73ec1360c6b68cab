"""Tests of the GRIT preconditioner and its optimizer wrapper on tiny peft LoRA models (CPU)."""

from __future__ import annotations

import dataclasses
import io
import logging

import peft
import pytest
import torch
import transformers
from torch import nn

from alignment.config.grit import GritConfig
from alignment.optim.grit import GritHParams, GritPreconditioner, build_grit
from alignment.optim.grit_optimizer import GritOptimizer

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FAST = dict(cov_update_freq=1, kfac_update_freq=2, kfac_min_samples=0, reprojection_warmup_steps=0)


def tiny_llama(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = transformers.LlamaForCausalLM(config)
    return peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))


def tiny_linear(seed: int = 0) -> nn.Module:
    """One LoRA linear layer (6 → 5, r = 3) with a non-zero B so that v = g_y B is not zero."""
    torch.manual_seed(seed)
    model = peft.get_peft_model(
        nn.Sequential(nn.Linear(6, 5)), peft.LoraConfig(r=3, lora_alpha=6, target_modules=["0"])
    )
    with torch.no_grad():
        model.base_model.model[0].lora_B["default"].weight.normal_()
    return model


def lora_params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def batch(step: int) -> torch.Tensor:
    return torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(100 + step))


def grit_optimizer(model: nn.Module, lr: float = 1e-2, max_grad_norm: float = 1.0, **hp):
    pre = GritPreconditioner(model, GritHParams(**hp))
    inner = torch.optim.AdamW(lora_params(model), lr=lr)
    return GritOptimizer(inner, pre, max_grad_norm=max_grad_norm), pre


def train(model, opt, pre, steps: int, start: int = 0, grad_accum: int = 1) -> list[float]:
    losses = []
    for step in range(start, start + steps):
        for micro in range(grad_accum):
            loss = model(input_ids=batch(10 * step + micro), labels=batch(10 * step + micro)).loss
            if pre is not None:
                pre.observe_loss(loss.detach())
                reg = pre.regularization_loss()
                loss = loss if reg is None else loss + reg
            (loss / grad_accum).backward()
            losses.append(loss.item())
        if pre is None:
            torch.nn.utils.clip_grad_norm_(lora_params(model), 1.0)
        opt.step()
        opt.zero_grad()
    return losses


def test_hparams_are_defined_once_and_the_config_is_one():
    # GritConfig inherits the knobs (no second list that could drift) and is passed as it is.
    assert issubclass(GritConfig, GritHParams)
    knobs = {f.name for f in dataclasses.fields(GritHParams)}
    own = {f.name for f in dataclasses.fields(GritConfig)} - knobs
    assert own == {
        "name", "lr", "weight_decay", "beta1", "beta2", "eps", "scheduler", "warmup_ratio",
        "warmup_steps", "max_grad_norm", "base", "grad_clip_order",
        "reset_optimizer_state_on_reproject",
    }  # fmt: skip
    model = tiny_llama()
    inner = torch.optim.SGD(lora_params(model), lr=0.0)
    _, pre = build_grit(GritConfig(kfac_update_freq=3), model, inner)
    assert pre.hp.kfac_update_freq == 3


def test_off_with_zero_lambdas_is_bit_identical_to_adamw():
    model = tiny_llama()
    adamw = torch.optim.AdamW(lora_params(model), lr=1e-2)
    expected = train(model, adamw, None, steps=12)
    model_g = tiny_llama()
    off = dict(precondition=False, reproject=False, lambda_kfac=0.0, lambda_reproj=0.0)
    opt, pre = grit_optimizer(model_g, **FAST, **off)
    assert train(model_g, opt, pre, steps=12) == expected
    assert pre.sched.inversions > 0 and pre.capture.captures > 0  # the machinery did run
    for p, q in zip(lora_params(model), lora_params(model_g), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("mode", ["cumulative", "ema"])
def test_hook_statistics_equal_a_direct_computation(masked: bool, mode: str):
    model = tiny_linear()
    layer = model.base_model.model[0]
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    pre = GritPreconditioner(
        model,
        GritHParams(cov_update_freq=1, stats_mode=mode, ema_decay=0.7, stats_mask="attention"),
    )
    expected_a = expected_g = None
    for seed in range(2):
        gen = torch.Generator().manual_seed(seed)
        x, w = torch.randn(2, 4, 6, generator=gen), torch.randn(2, 4, 5, generator=gen)
        mask = torch.rand(2, 4, generator=gen) > 0.4 if masked else torch.ones(2, 4, dtype=bool)
        pre.set_token_mask(mask if masked else None)
        (model(x) * w).sum().backward()  # so g_y = w exactly
        u, v = (x @ a.T)[mask], (w @ b)[mask]  # (N, r) over the counted tokens
        batch_a, batch_g = u.T @ u / len(u), v.T @ v / len(v)
        if expected_a is None:
            expected_a, expected_g, tokens = batch_a, batch_g, len(u)
        elif mode == "ema":
            expected_a = 0.7 * expected_a + 0.3 * batch_a
            expected_g = 0.7 * expected_g + 0.3 * batch_g
        else:
            n = len(u)
            expected_a = (tokens * expected_a + n * batch_a) / (tokens + n)
            expected_g = (tokens * expected_g + n * batch_g) / (tokens + n)
            tokens += n
    group = pre.groups[0]
    torch.testing.assert_close(group.cov_a[0], expected_a.detach())
    torch.testing.assert_close(group.cov_g[0], expected_g.detach())


def test_throttle_skips_no_grad_disabled_adapter_and_checkpoint_recompute():
    model = tiny_linear()
    pre = GritPreconditioner(model, GritHParams(cov_update_freq=3))
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        model(x)
    with model.disable_adapter():
        model(x)
    assert pre.capture.calls == [[0]]
    for _ in range(3):
        model(x).sum().backward()
    assert pre.capture.calls == [[3]] and pre.capture.captures == 1
    llama = tiny_llama()
    llama.gradient_checkpointing_enable()  # transformers' default: non-reentrant
    pre_l = GritPreconditioner(llama, GritHParams(cov_update_freq=1))
    llama(input_ids=batch(0), labels=batch(0)).loss.backward()
    assert pre_l.capture.captures == 14  # once per module, not again during recomputation


def test_token_mask_with_the_wrong_shape_is_rejected():
    model = tiny_linear()
    pre = GritPreconditioner(model, GritHParams(cov_update_freq=1, stats_mask="response"))
    pre.set_token_mask(torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="token mask"):
        model(torch.randn(2, 4, 6))


def _factors(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 9, generator=gen)
    return x @ x.T / 9


@pytest.mark.parametrize("pairing", ["grit", "kfac_exact"])
def test_pairing_puts_the_right_factor_on_each_side(pairing: str):
    model = tiny_linear()
    layer = model.base_model.model[0]
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    hp = GritHParams(pairing=pairing, kfac_damping=1e-3, adaptive_damping=False, kfac_min_samples=0)
    pre = GritPreconditioner(model, hp)
    group = pre.groups[0]
    sigma_a, sigma_g = _factors(0), _factors(1)
    group.cov_a[0], group.cov_g[0] = sigma_a, sigma_g
    pre.invert()
    grad_a, grad_b = torch.randn_like(a), torch.randn_like(b)
    a.grad, b.grad = grad_a.clone(), grad_b.clone()
    pre.precondition()
    inv_a = torch.linalg.inv(sigma_a + 1e-3 * torch.eye(3))
    inv_g = torch.linalg.inv(sigma_g + 1e-3 * torch.eye(3))
    left, right = (inv_a, inv_g) if pairing == "grit" else (inv_g, inv_a)
    torch.testing.assert_close(a.grad, left @ grad_a, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.grad, grad_b @ right, atol=1e-4, rtol=1e-4)
    # The two pairings are distinguishable: Σ_a ≠ Σ_g gives different B gradients.
    assert not torch.allclose(grad_b @ inv_a, grad_b @ inv_g, atol=1e-3)


def test_identity_statistics_precondition_to_the_raw_gradient():
    model = tiny_linear()
    pre = GritPreconditioner(model, GritHParams(kfac_min_samples=0, adaptive_damping=False))
    group = pre.groups[0]
    group.cov_a[0], group.cov_g[0] = torch.eye(3), torch.eye(3)
    pre.invert()  # δ = 1e-5 floor: inverse ≈ I / (1 + 1e-5)
    params = lora_params(model)
    raw = [torch.randn_like(p) for p in params]
    for p, g in zip(params, raw, strict=True):
        p.grad = g.clone()
    pre.precondition()
    for p, g in zip(params, raw, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-4, rtol=1e-4)


def test_singular_statistics_invert_without_nan():
    model = tiny_llama()
    pre = GritPreconditioner(model, GritHParams(kfac_min_samples=0))
    pre.invert()  # all Σ = 0: δI alone
    group = pre.groups[0]
    assert group.has_inv.all() and torch.isfinite(group.inv_a).all()
    metrics = pre.metrics()
    assert metrics["grit/inversion_failures"] == 0 and metrics["grit/damping_scale"] == 1.0


@pytest.mark.parametrize("order", ["clip_then_precondition", "precondition_then_clip"])
def test_clip_order(order: str):
    model = tiny_llama()
    pre = GritPreconditioner(
        model, GritHParams(**(FAST | dict(kfac_update_freq=1, reproject=False)))
    )
    opt = GritOptimizer(torch.optim.SGD(lora_params(model), lr=0.0), pre, 0.01, order)
    train(model, opt, pre, steps=2)  # the second step makes B non-zero... lr = 0: it stays 0
    loss = model(input_ids=batch(7), labels=batch(7)).loss
    loss.backward()
    params = lora_params(model)
    raw = [p.grad.clone() for p in params]
    group = pre.groups[0]
    inv = {id(m.a): (group.inv_a[i], "left") for i, m in enumerate(group.modules)}
    inv |= {id(m.b): (group.inv_g[i], "right") for i, m in enumerate(group.modules)}

    def precondition(grads):
        out = []
        for p, g in zip(params, grads, strict=True):
            mat, side = inv[id(p)]
            out.append(mat @ g if side == "left" else g @ mat)
        return out

    def clip(grads):
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        return [g * min(1.0, 0.01 / (norm.item() + 1e-6)) for g in grads]

    expected = (
        precondition(clip(raw)) if order == "clip_then_precondition" else clip(precondition(raw))
    )
    opt.step()  # SGD with lr 0 leaves .grad as GRIT wrote it
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, e, atol=1e-6, rtol=1e-4)


def test_gradient_accumulation_counts_micro_batches_and_optimizer_steps():
    model = tiny_llama()
    opt, pre = grit_optimizer(model, **(FAST | dict(kfac_update_freq=3, reproject=False)))
    train(model, opt, pre, steps=3, grad_accum=2)
    group = pre.groups[0]
    assert pre.capture.captures == 14 * 6 and pre.capture.calls[0] == [6] * 14
    assert torch.equal(group.n_a, torch.full((14,), 6 * 16.0, dtype=torch.float64))
    assert pre.sched.step == 3 and pre.sched.loss_count == 3 and pre.sched.inversions == 1


def test_state_dict_round_trip_resumes_identically():
    hp = FAST | dict(reprojection_freq=3, reprojection_k=2, lambda_kfac=1e-2, lambda_reproj=1e-2)
    model = tiny_llama()
    opt, pre = grit_optimizer(model, **hp)
    train(model, opt, pre, steps=4)
    buffer = io.BytesIO()
    torch.save(
        {"opt": opt.state_dict(), "lora": [p.detach().clone() for p in lora_params(model)]}, buffer
    )
    expected = train(model, opt, pre, steps=4, start=4)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # as Hugging Face's Trainer loads it
    model_r = tiny_llama()
    with torch.no_grad():
        for p, q in zip(lora_params(model_r), saved["lora"], strict=True):
            p.copy_(q)
    opt_r, pre_r = grit_optimizer(model_r, **hp)
    opt_r.load_state_dict(saved["opt"])
    assert pre_r.sched.step == 4 and pre_r.sched.reprojections == 1
    assert train(model_r, opt_r, pre_r, steps=4, start=4) == expected


def test_reprojection_cuts_rank_warns_and_can_reset_moments(caplog):
    model = tiny_llama()
    with caplog.at_level(logging.WARNING, logger="alignment.optim.grit"):
        opt, pre = grit_optimizer(model, **FAST, reprojection_freq=2, reprojection_k=2)
    assert "reprojection will cut rank r=4 to k=2" in caplog.text
    opt.reset_optimizer_state_on_reproject = True
    train(model, opt, pre, steps=2)
    for mod in pre.groups[0].modules:
        assert torch.linalg.matrix_rank(mod.a.detach()).item() <= 2
        assert torch.linalg.matrix_rank(mod.b.detach()).item() <= 2
        state = opt.state[mod.a]
        assert not state["exp_avg"].any() and state["step"].item() == 0
    metrics = pre.metrics()
    assert metrics["grit/reprojection_k_mean"] == 2 and metrics["grit/effective_param_ratio"] == 0.5
    assert metrics["grit/reprojections"] == 1


def test_rank_adaptation_uses_the_tau_rule():
    model = tiny_llama()
    hp = FAST | dict(enable_rank_adaptation=True, min_lora_rank=2, reprojection_freq=1)
    pre = GritPreconditioner(model, GritHParams(**hp))
    group = pre.groups[0]
    group.cov_a.copy_(torch.diag(torch.tensor([0.9, 0.05, 0.03, 0.02])).expand(14, 4, 4))
    group.cov_a[0] = torch.diag(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    pre.reproject()
    assert group.k[1:].eq(4).all() and group.k[0].item() == 2  # k = 1 clamped to min_lora_rank


def test_regularization_loss_matches_a_per_module_sum():
    model = tiny_llama()
    hp = FAST | dict(
        lambda_kfac=0.3, lambda_reproj=0.7, regularizer_basis="cached", reproject=False
    )
    opt, pre = grit_optimizer(model, **hp)
    train(model, opt, pre, steps=2)  # one inversion: bases are cached
    group = pre.groups[0]
    expected = 0.0
    for i, mod in enumerate(group.modules):
        a, b = mod.a.detach(), mod.b.detach()
        eye = torch.eye(4)
        expected += 0.3 * (
            torch.trace(a.T @ group.cov_a[i] @ a) + torch.trace(b @ group.cov_g[i] @ b.T)
        )
        expected += 0.7 * (((eye - group.proj_a[i]) @ a).square().sum())
        expected += 0.7 * ((b @ (eye - group.proj_g[i])).square().sum())
    torch.testing.assert_close(pre.regularization_loss().detach(), expected, rtol=1e-4, atol=1e-7)
    off = GritPreconditioner(tiny_llama(), GritHParams(lambda_kfac=0.0, lambda_reproj=0.0))
    assert off.regularization_loss() is None


@pytest.mark.parametrize(("basis", "positive"), [("reference", True), ("cached", False)])
def test_regularizer_basis_before_any_event(basis: str, positive: bool):
    pre = GritPreconditioner(
        tiny_llama(),
        GritHParams(lambda_kfac=0.0, lambda_reproj=1.0, regularizer_basis=basis, min_lora_rank=1),
    )
    pre.groups[0].cov_a.copy_(torch.diag(torch.tensor([1.0, 0.0, 0.0, 0.0])).expand(14, 4, 4))
    # reference: per-step eigh with the tau rule (k = 1 here), so A's energy off the top
    # direction is penalised; cached: no basis until the first inversion, so no λ_R term.
    assert (pre.regularization_loss().item() > 0) is positive


@pytest.mark.parametrize("adaptive", [True, False])
def test_adaptive_damping_and_frequency(adaptive: bool):
    hp = dict(
        adaptive_damping=adaptive, adaptive_freq=adaptive, kfac_update_freq=10, kfac_damping=1e-4
    )
    pre = GritPreconditioner(tiny_llama(), GritHParams(reproject=False, **hp))
    for step in range(20):
        pre.observe_loss(torch.tensor(1.0 + 0.5 * (step % 2)))
        pre.step_end()
    assert pre.sched.inversions == 2
    assert pre.sched.kfac_freq == (7 if adaptive else 10)  # noisy, not improving: 0.75 × base
    assert pre.metrics()["grit/damping"] == pytest.approx(1e-2 if adaptive else 1e-4)


def test_build_grit_works_with_lr_scheduler_and_accelerate():
    from accelerate import Accelerator

    model = tiny_llama()
    inner = torch.optim.AdamW(lora_params(model), lr=1e-2)
    opt, pre = build_grit(GritConfig(kfac_update_freq=1, cov_update_freq=1), model, inner)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** (step + 1))
    assert inner.param_groups[0]["lr"] == pytest.approx(5e-3)
    wrapped = Accelerator(cpu=True).prepare_optimizer(opt)
    for step in range(2):
        model(input_ids=batch(step), labels=batch(step)).loss.backward()
        wrapped.step()
        scheduler.step()
        wrapped.zero_grad()
    assert pre.sched.step == 2 and inner.param_groups[0]["lr"] == pytest.approx(1.25e-3)
    assert "grit" in wrapped.state_dict() and all(p.grad is None for p in lora_params(model))
    metrics = pre.metrics()
    assert {"grit/effective_rank_mean", "grit/precond_grad_norm", "grit/damping"} <= set(metrics)


def test_four_bit_base_layer():
    bnb = pytest.importorskip("bitsandbytes")
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    torch.manual_seed(0)
    base = bnb.nn.Linear4bit(16, 8, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    base.weight = bnb.nn.Params4bit(torch.randn(8, 16), requires_grad=False, quant_type="nf4")
    base.weight = base.weight._quantize("cpu")
    layer = LoraLinear4bit(
        base, "default", config=peft.LoraConfig(r=4, lora_alpha=8), r=4, lora_alpha=8
    )
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    model = nn.Sequential(layer)
    opt, pre = grit_optimizer(model, **(FAST | dict(kfac_update_freq=1, reproject=False)))
    for step in range(2):
        model(
            torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(step))
        ).square().sum().backward()
        opt.step()
        opt.zero_grad()
    group = pre.groups[0]
    assert group.n_a.item() == 20 and group.has_inv.all() and torch.isfinite(group.inv_g).all()
    assert pre.metrics()["grit/precond_grad_norm"] > 0
