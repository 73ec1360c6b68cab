"""The preflight inside a run, in process on model=tiny: the fine-tuning loss is the trainer's own
loss for every method, AlignGuard's terms enter the trainer's loss, the config keys reach the
maths, and bad input stops with one line naming the key before any training step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from alignment.data.prepare import prepare_data
from alignment.methods import get_method
from alignment.models import load_policy, load_tokenizer
from alignment.pipeline import build_trainer
from alignment.risk import RiskInputError
from alignment.risk.builder import needs_preflight, planned_steps, run_assessment
from alignment.risk.regularizers import REGULARIZERS, AlignGuardConfig, RegularizerEntry
from alignment.risk.runner import finetune_batches, method_loss
from bench.refcache_grid import write_flagged_pairs
from tests.conftest import compose_cfg

METHOD_CASES = {
    "sft": ["method=sft"],
    "dpo": ["method=dpo"],
    "factual_dpo": ["method=factual_dpo", "method.delta=4"],
    "cita": ["method=cita", "method.reference_free=false"],
    "cita_token_kl": ["method=cita", "method.kl_estimator=token_full_vocab", "method.lambda_sft=1"],
}


def setup(overrides: list[str], tmp, cache, perturb: bool = True):
    cfg = compose_cfg(["model=tiny", "train.samples=0", *overrides], tmp, cache)
    method = get_method(cfg.method)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = prepare_data(cfg, method, tokenizer)
    torch.manual_seed(0)
    model = load_policy(cfg.model, cfg.cache_dir, torch.device("cpu"))
    if perturb:  # a policy that differs from its reference (LoRA B != 0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.3)
    return cfg, method, tokenizer, data, model


@pytest.mark.parametrize("case", sorted(METHOD_CASES))
def test_finetune_loss_is_the_trainers_loss(case, tmp_path, cache_dir):
    """The preflight's fine-tuning loss (method_loss) equals AlignmentTrainer.compute_loss on
    the same batch (eval mode: the batch's own token counts) for every method, on pairs with
    hallucination flags in all four (h_w, h_l) buckets."""
    data_path = write_flagged_pairs(tmp_path / "pairs.jsonl", 12, unflipped=True)
    local = ["dataset=local", f"dataset.path={data_path}", "dataset.val_fraction=0"]
    cfg, method, tokenizer, data, _ = setup([*METHOD_CASES[case], *local], tmp_path, cache_dir)
    trainer = build_trainer(cfg, method, torch.device("cpu"), tokenizer, data, tmp_path / "t")
    model = trainer.model
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    model.eval()
    (batch,) = finetune_batches(
        data.train, tokenizer.pad_token_id, pairs=method.needs_pairs, batch_size=3, count=1,
        seed=0, device="cpu",
    )  # fmt: skip
    expected = trainer.compute_loss(model, batch)
    got = method_loss(method, cfg.method)(model, batch)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-7)


def test_alignguard_terms_enter_the_trainers_loss(tmp_path, cache_dir):
    overrides = ["risk=preflight", "regularizer=alignguard", "risk.max_samples=16"]
    cfg, method, tokenizer, data, _ = setup(overrides, tmp_path, cache_dir)
    trainer = build_trainer(cfg, method, torch.device("cpu"), tokenizer, data, tmp_path / "t")
    guard, model = trainer.regularizer, trainer.model
    assert guard is not None and guard()[0].item() == 0.0  # anchored at the fresh adapter
    with torch.no_grad():
        for p in guard.params:
            p.add_(0.05)
    model.train()
    (batch,) = finetune_batches(
        data.train, tokenizer.pad_token_id, pairs=True, batch_size=2, count=1, seed=0,
        device="cpu",
    )  # fmt: skip
    total, terms = guard()
    assert total.item() > 0 and set(terms) == {"reg/fisher", "reg/task", "reg/e_rm", "reg/e_geo"}
    with_reg = trainer.compute_loss(model, batch)
    trainer.regularizer = None
    without = trainer.compute_loss(model, batch)
    assert with_reg.item() == pytest.approx(without.item() + total.item(), rel=1e-6)


def test_config_keys_reach_the_maths(tmp_path, cache_dir):
    """risk.* settings arrive in the report: samples, rank cap, eta (null = optimizer.lr, or set),
    the horizon stretched to the planned steps, and the selection by pattern."""
    overrides = [
        "risk=preflight",
        "risk.max_samples=12",
        "risk.top_rank=3",
        "risk.max_steps=5",
        "risk.parameter_names=[*.layers.0.self_attn.v_proj.lora_*]",
        "train.max_steps=7",
        "optimizer.lr=0.02",
        "risk.cache=false",
    ]
    cfg, method, tokenizer, data, model = setup(overrides, tmp_path, cache_dir, perturb=False)
    sel, subspace, hit, report, planned = run_assessment(cfg, method, model, tokenizer, data, "cpu")
    assert sel.names == [
        n for n, _ in model.named_parameters() if "layers.0.self_attn.v_proj.lora_" in n
    ]
    assert subspace.samples == 12 and subspace.rank <= 3 and not hit
    assert report.learning_rate == 0.02 and planned == 7 and report.forecast.steps[-1] == 7
    cfg2 = dataclasses.replace(cfg, risk=dataclasses.replace(cfg.risk, learning_rate=0.5))
    assert run_assessment(cfg2, method, model, tokenizer, data, "cpu")[3].learning_rate == 0.5


def test_planned_steps_and_when_the_preflight_runs(tmp_path):
    cfg = compose_cfg(
        ["model=tiny", "train.batch_size=4", "train.grad_accum=2"], tmp_path, tmp_path
    )
    assert planned_steps(cfg, 33) == 5  # ceil(ceil(33 / 4) / 2) = ceil(9 / 2) = 5 (1 epoch)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2.5))
    assert planned_steps(cfg, 33) == 13  # ceil(2.5 * 5)
    assert not needs_preflight(cfg)
    assert needs_preflight(compose_cfg(["risk.gate=warn"], tmp_path, tmp_path))
    assert needs_preflight(compose_cfg(["regularizer=alignguard"], tmp_path, tmp_path))
    assert needs_preflight(compose_cfg(["risk=preflight"], tmp_path, tmp_path))


def test_bad_input_names_the_key(tmp_path, cache_dir):
    # regularizer=alignguard over parameters that are not LoRA factors (a trainable norm).
    bad = ["regularizer=alignguard", "risk.parameter_names=[*.layers.-1.*norm*]"]
    cfg, method, tokenizer, data, model = setup(bad, tmp_path, cache_dir, perturb=False)
    for name, p in model.named_parameters():
        p.requires_grad_("norm" in name or "lora_" in name)
    with pytest.raises(RiskInputError, match=r"^regularizer=alignguard needs LoRA modules"):
        run_assessment(cfg, method, model, tokenizer, data, "cpu")
    # A non-finite Fisher: NaN in a selected LoRA factor poisons every per-sample gradient.
    cfg, method, tokenizer, data, model = setup(["risk=preflight"], tmp_path, cache_dir)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "layers.1.self_attn.q_proj.lora_B" in n)[
            0, 0
        ] = float("nan")
    with pytest.raises(RiskInputError, match=r"^risk.parameter_names: the empirical Fisher has"):
        run_assessment(cfg, method, model, tokenizer, data, "cpu")


def test_regularizer_entry_rejects_keys_its_terms_ignore():
    @dataclasses.dataclass
    class Extra(AlignGuardConfig):
        gamma: float = 1.0

    entry = REGULARIZERS.get("alignguard")
    with pytest.raises(TypeError, match=r"config keys \['gamma'\] are not term arguments"):
        RegularizerEntry("x", Extra, entry.terms, entry.build, ("h",))
