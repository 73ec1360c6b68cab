"""Method-level checks through the METHODS registry and PolicyBatch (what the trainer calls),
and the experiment presets of the paper grid.

Hand values (Factual-DPO, zero log-ratios, beta = 0.1, delta = 10, (h_w, h_l) = (0, 1)):
  z = 0.1 * [(0 - 0) - 10 * (1 - 0)] = -1;  loss = -log sigma(-1) = softplus(1) = 1.3132617
CITA with lambda_kl = 0 and reference_free: L = -log sigma(beta (s+ - s-)), which is TRL's
sigmoid DPO with zero reference log-probs (TRL's reference-free DPO).
"""

from __future__ import annotations

import importlib
import math
import re
import sys

import pytest
import torch

from alignment.data.types import PreferenceExample, Turn
from alignment.losses import token_kl_full_vocab
from alignment.methods import (
    METHODS,
    CitaConfig,
    DpoConfig,
    FactualDpoConfig,
    PolicyBatch,
    SftConfig,
    get_method,
)
from tests.conftest import REPO, compose_cfg
from tests.losses.test_dpo_trl_parity import trl_sigmoid_loss

PAIR_DIAGNOSTICS = ("rewards/margins", "rewards/accuracy", "logps/chosen", "logps/rejected")


def pair_batch(seed: int = 0, b: int = 6, **extra) -> PolicyBatch:
    g = torch.Generator().manual_seed(seed)
    logps = [-torch.rand(b, generator=g, dtype=torch.float64) * 20 for _ in range(4)]
    tokens = torch.full((b,), 7.0, dtype=torch.float64)
    return PolicyBatch(
        policy_chosen_logps=logps[0],
        chosen_tokens=tokens,
        policy_rejected_logps=logps[1],
        rejected_tokens=tokens,
        ref_chosen_logps=logps[2],
        ref_rejected_logps=logps[3],
        h_w=torch.zeros(b, dtype=torch.float64),
        h_l=torch.zeros(b, dtype=torch.float64),
        **extra,
    )


def loss_of(cfg, batch: PolicyBatch):
    return get_method(cfg).loss(cfg, batch)


# -- the registry -------------------------------------------------------------------------------
def test_registry_has_the_grid_methods_each_with_a_yaml_and_a_papers_line():
    grid = {"baseline", "sft", "dpo", "cita", "factual_dpo"}
    family = {"ipo", "hinge", "robust", "simpo", "orpo", "sigmoid_norm"}
    model_changing = {"mac", "alignx"}
    assert set(METHODS.names()) == grid | family | model_changing
    papers = (REPO / "PAPERS.md").read_text()
    for name in METHODS.names():
        assert (REPO / "conf" / "method" / f"{name}.yaml").is_file(), name
        line = rf"^\| `{name}`( \(AlignX-repro\))? \|"
        assert re.search(line, papers, re.M), f"PAPERS.md has no line for {name}"
    assert re.search(r"^\| `grit` \(optimizer\) \|", papers, re.M)


def test_papers_md_names_functions_that_exist():
    papers = (REPO / "PAPERS.md").read_text()
    paths = re.findall(r"`(alignment\.(?:losses|optim|models|alignx)[\w.]*)`", papers)
    assert len(paths) >= 6
    for path in paths:
        parts = path.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            break


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="cita.*dpo.*factual_dpo"):
        METHODS.get("cita_kl")


def test_schema_mismatch_is_a_type_error():
    with pytest.raises(TypeError, match="CitaConfig"):
        get_method(DpoConfig(name="cita"))


@pytest.mark.parametrize(
    "cfg,reference,logits,flags",
    [
        (SftConfig(name="sft"), False, False, False),
        (DpoConfig(name="dpo"), True, False, False),
        (DpoConfig(name="dpo", reference_free=True), False, False, False),
        (CitaConfig(name="cita"), True, False, False),  # lambda_kl > 0 anchors to the reference
        (CitaConfig(name="cita", lambda_kl=0.0), False, False, False),
        (CitaConfig(name="cita", lambda_kl=0.0, reference_free=False), True, False, False),
        (CitaConfig(name="cita", kl_estimator="token_full_vocab"), True, True, False),
        (FactualDpoConfig(name="factual_dpo"), True, False, False),
        (FactualDpoConfig(name="factual_dpo", delta=10.0), True, False, True),
    ],
)
def test_what_each_method_needs(cfg, reference, logits, flags):
    method = get_method(cfg)
    assert method.needs_reference(cfg) == reference
    assert method.needs_reference_logits(cfg) == logits
    assert method.needs_flags(cfg) == flags


def test_only_cita_uses_the_instruction_and_noinstruct_drops_it():
    assert get_method(CitaConfig(name="cita")).uses_instruction(CitaConfig(name="cita"))
    noinstruct = CitaConfig(name="cita", use_instruction=False)
    assert not get_method(noinstruct).uses_instruction(noinstruct)
    for cfg in (DpoConfig(name="dpo"), FactualDpoConfig(name="factual_dpo"), SftConfig(name="sft")):
        assert not get_method(cfg).uses_instruction(cfg)


# -- CITA ---------------------------------------------------------------------------------------
def trl_sigmoid_dpo(chosen, rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """TRL 1.16's sigmoid DPO loss on summed log-probs (one token per sequence)."""
    per_token = torch.cat([chosen, rejected]).unsqueeze(1)
    return trl_sigmoid_loss(per_token, ref_chosen, ref_rejected, beta)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_cita_lambda0_reference_free_equals_trl_reference_free_dpo(beta):
    b = pair_batch(1)
    b.ref_chosen_logps = b.ref_rejected_logps = None  # a reference-free method gets none
    cfg = CitaConfig(name="cita", beta=beta, lambda_kl=0.0, reference_free=True)
    zeros = torch.zeros_like(b.policy_chosen_logps)
    expected = trl_sigmoid_dpo(b.policy_chosen_logps, b.policy_rejected_logps, zeros, zeros, beta)
    assert abs(loss_of(cfg, b).loss.item() - expected.item()) < 1e-6


def test_cita_lambda0_stacked_equals_dpo_and_trl():
    b = pair_batch(2)
    cita = loss_of(CitaConfig(name="cita", lambda_kl=0.0, reference_free=False), b)
    dpo = loss_of(DpoConfig(name="dpo"), b)
    trl = trl_sigmoid_dpo(
        b.policy_chosen_logps,
        b.policy_rejected_logps,
        b.ref_chosen_logps,
        b.ref_rejected_logps,
        0.1,
    )
    assert abs(cita.loss.item() - dpo.loss.item()) < 1e-6
    assert abs(cita.loss.item() - trl.item()) < 1e-6


@pytest.mark.parametrize("estimator", ["seq_logratio", "seq_sq"])
def test_cita_sequence_kl_is_zero_when_policy_is_reference(estimator):
    b = pair_batch(3)
    b.ref_chosen_logps, b.ref_rejected_logps = (
        b.policy_chosen_logps.clone(),
        b.policy_rejected_logps.clone(),
    )
    out = loss_of(CitaConfig(name="cita", lambda_kl=0.5, kl_estimator=estimator), b)
    assert out.metrics["cita/kl"].item() == 0.0
    assert abs(out.loss.item() - out.metrics["cita/contrastive"].mean().item()) < 1e-12


def test_cita_seq_sq_is_nonnegative_and_seq_logratio_can_be_negative():
    b = pair_batch(4)
    b.ref_chosen_logps, b.ref_rejected_logps = (
        b.policy_chosen_logps + 1.0,
        b.policy_rejected_logps + 3.0,
    )
    signed = loss_of(CitaConfig(name="cita", kl_estimator="seq_logratio"), b)
    squared = loss_of(CitaConfig(name="cita", kl_estimator="seq_sq"), b)
    assert abs(signed.metrics["cita/kl"].item() - 0.5 * (-1.0 - 3.0)) < 1e-9
    assert abs(squared.metrics["cita/kl"].item() - 0.5 * (1.0 + 9.0)) < 1e-9


def _logits_and_labels(seed: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 9, 32, generator=g) * 3
    labels = torch.randint(0, 32, (4, 9), generator=g)
    labels[:, :4] = -100  # prompt positions
    return logits, labels


def test_token_full_vocab_kl_zero_for_same_model_and_nonnegative_otherwise():
    logits, labels = _logits_and_labels(5)
    assert abs(token_kl_full_vocab(logits, logits.clone(), labels).item()) < 1e-6
    for seed in range(6, 11):
        other, _ = _logits_and_labels(seed)
        assert token_kl_full_vocab(logits, other, labels).item() >= 0.0


def test_cita_token_full_vocab_through_the_registry():
    # A real, positive KL (two different models): the anchor is the token mean of the per-token
    # KL, i.e. the summed KL the trainer passes over the response-token count.
    logits, labels = _logits_and_labels(12)
    other, _ = _logits_and_labels(13)
    kl_sum = token_kl_full_vocab(logits, other, labels, "sum")
    n_response = (labels[:, 1:] != -100).sum()
    b = pair_batch(12, b=2, token_kl_sum=kl_sum, response_tokens_total=n_response)
    cfg = CitaConfig(name="cita", lambda_kl=0.3, kl_estimator="token_full_vocab")
    out = loss_of(cfg, b)
    expected_kl = token_kl_full_vocab(logits, other, labels)  # the mean, computed apart
    assert expected_kl.item() > 0.1
    assert abs(out.metrics["cita/kl"].item() - expected_kl.item()) < 1e-6
    contrastive = out.metrics["cita/contrastive"].mean()
    assert abs(out.loss.item() - (contrastive + 0.3 * expected_kl).item()) < 1e-6


def test_cita_token_full_vocab_with_lambda0_is_reference_free_dpo():
    b = pair_batch(13)
    b.ref_chosen_logps = b.ref_rejected_logps = None
    cfg = CitaConfig(name="cita", lambda_kl=0.0, kl_estimator="token_full_vocab")
    assert not get_method(cfg).needs_reference(cfg)  # so the trainer fills no token_kl_sum
    zeros = torch.zeros_like(b.policy_chosen_logps)
    expected = trl_sigmoid_dpo(b.policy_chosen_logps, b.policy_rejected_logps, zeros, zeros, 0.1)
    assert abs(loss_of(cfg, b).loss.item() - expected.item()) < 1e-6


def test_cita_sft_term_adds_lambda_times_token_mean_nll():
    b = pair_batch(14)
    base = loss_of(CitaConfig(name="cita", lambda_kl=0.0), b).loss
    out = loss_of(CitaConfig(name="cita", lambda_kl=0.0, lambda_sft=0.5), b)
    nll = -b.policy_chosen_logps.sum() / b.chosen_tokens.sum()
    assert abs(out.loss.item() - (base + 0.5 * nll).item()) < 1e-9
    assert abs(out.metrics["cita/sft_nll"].item() - nll.item()) < 1e-9


# -- Factual-DPO ----------------------------------------------------------------------------------
def test_factual_dpo_delta0_equals_dpo():
    b = pair_batch(20)
    b.h_w = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    b.h_l = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    fdpo = loss_of(FactualDpoConfig(name="factual_dpo", delta=0.0), b).loss
    assert abs(fdpo.item() - loss_of(DpoConfig(name="dpo"), b).loss.item()) < 1e-12


def test_factual_dpo_equal_flags_ignore_delta():
    b = pair_batch(21)
    b.h_w = b.h_l = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    losses = [
        loss_of(FactualDpoConfig(name="factual_dpo", delta=d), b).loss.item()
        for d in (0, 2, 10, 100)
    ]
    assert max(losses) - min(losses) < 1e-12


def test_factual_dpo_0_1_pairs_rise_with_delta():
    b = pair_batch(22)
    b.h_w, b.h_l = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    losses = [
        loss_of(FactualDpoConfig(name="factual_dpo", delta=d), b).loss.item()
        for d in (0, 2, 4, 6, 8, 10, 20, 30, 50, 100)
    ]
    assert all(a < c for a, c in zip(losses, losses[1:], strict=False))


def test_factual_dpo_hand_value():
    zero = torch.zeros(1, dtype=torch.float64)
    b = PolicyBatch(
        policy_chosen_logps=zero,
        chosen_tokens=zero + 1,
        policy_rejected_logps=zero,
        rejected_tokens=zero + 1,
        ref_chosen_logps=zero,
        ref_rejected_logps=zero,
        h_w=zero,
        h_l=zero + 1,
    )
    out = loss_of(FactualDpoConfig(name="factual_dpo", beta=0.1, delta=10.0), b)
    assert abs(out.loss.item() - math.log1p(math.e)) < 1e-9
    assert abs(out.loss.item() - 1.31326) < 1e-5


def test_factual_dpo_label_smoothing_and_safedpo_reading():
    b = pair_batch(23)
    b.h_w, b.h_l = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    inside = loss_of(FactualDpoConfig(name="factual_dpo", beta=0.1, delta=10.0), b).loss
    outside = loss_of(
        FactualDpoConfig(name="factual_dpo", beta=0.1, delta=1.0, delta_inside_beta=False), b
    ).loss
    assert abs(inside.item() - outside.item()) < 1e-12
    smooth = loss_of(FactualDpoConfig(name="factual_dpo", delta=10.0, label_smoothing=0.1), b)
    z = smooth.metrics["factual/z"]
    expected = -0.9 * torch.nn.functional.logsigmoid(z) - 0.1 * torch.nn.functional.logsigmoid(-z)
    assert abs(smooth.loss.item() - expected.mean().item()) < 1e-9


def _examples(flags):
    return [
        PreferenceExample(
            (Turn("user", f"q{i}"),),
            f"good{i}",
            f"bad{i}",
            h_w=hw,
            h_l=hl,
            origin=f"f.jsonl:{i + 1}",
        )
        for i, (hw, hl) in enumerate(flags)
    ]


@pytest.mark.parametrize("flip", [True, False])
def test_factual_dpo_transform_counts_buckets_and_flips_1_0_pairs(flip):
    cfg = FactualDpoConfig(name="factual_dpo", flip_unfactual_winner=flip)
    flags = [(0, 1), (1, 0), (1, 0), (0, 0), (1, 1), (None, None)]
    out, counts = get_method(cfg).transform(cfg, _examples(flags))
    assert counts["bucket_0_1"] == 1 and counts["bucket_1_0"] == 2 and counts["missing"] == 1
    assert counts["bucket_0_0"] == 1 and counts["bucket_1_1"] == 1
    assert counts["flipped"] == (2 if flip else 0)
    pairs = [(ex.h_w, ex.h_l) for ex in out]
    assert ((1, 0) in pairs) != flip
    if flip:
        assert (out[1].chosen, out[1].rejected) == ("bad1", "good1")


# -- every method logs its diagnostics, with the values they name --------------------------------
@pytest.mark.parametrize(
    "cfg,extra",
    [
        (DpoConfig(name="dpo"), ()),
        (CitaConfig(name="cita"), ("cita/kl", "cita/contrastive", "logps/ref_chosen")),
        (FactualDpoConfig(name="factual_dpo", delta=4.0), ("factual/offset", "factual/z")),
    ],
)
def test_pair_methods_report_margins_accuracy_kl_and_logps(cfg, extra):
    """Each diagnostic equals the quantity its name says, recomputed here from the batch:
    rewards beta * s (s = log-ratio, or the log-prob itself for reference-free CITA), margins
    and accuracy from them, CITA's seq_logratio anchor, Factual-DPO's offset and logit z."""
    b = pair_batch(30)
    b.h_l = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    out = loss_of(cfg, b)
    pc, pr, rc, rr = (
        b.policy_chosen_logps,
        b.policy_rejected_logps,
        b.ref_chosen_logps,
        b.ref_rejected_logps,
    )
    for key in (*PAIR_DIAGNOSTICS, *extra):
        assert key in out.metrics, key
        assert torch.isfinite(out.metrics[key]).all() and not out.metrics[key].requires_grad
    s_w, s_l = (pc, pr) if cfg.name == "cita" else (pc - rc, pr - rr)
    expected = {
        "rewards/chosen": cfg.beta * s_w,
        "rewards/rejected": cfg.beta * s_l,
        "rewards/margins": cfg.beta * (s_w - s_l),
        "rewards/accuracy": (s_w > s_l).double(),
        "logps/chosen": pc,
        "logps/rejected": pr,
    }
    if cfg.name == "cita":
        expected["cita/kl"] = 0.5 * ((pc - rc).mean() + (pr - rr).mean())
        expected["logps/ref_chosen"] = rc
    if cfg.name == "factual_dpo":
        offset = cfg.delta * (b.h_l - b.h_w)
        expected["factual/offset"] = offset
        expected["factual/z"] = cfg.beta * ((s_w - s_l) - offset)
    for key, want in expected.items():
        torch.testing.assert_close(out.metrics[key].double(), want, msg=key)
    assert 0 < out.metrics["rewards/accuracy"].mean() < 1  # a mix: the check can tell


def test_sft_reports_logps():
    b = pair_batch(31)
    out = loss_of(SftConfig(name="sft"), b)
    torch.testing.assert_close(out.metrics["logps/chosen"], b.policy_chosen_logps)
    per_token = b.policy_chosen_logps / b.chosen_tokens
    torch.testing.assert_close(out.metrics["sft/token_logp"], per_token)


# -- the experiment presets ------------------------------------------------------------------------
CELLS = {
    "grid_baseline": ("baseline", "adamw"),
    "grid_sft": ("sft", "adamw"),
    "grid_sft_grit": ("sft", "grit"),
    "grid_dpo": ("dpo", "adamw"),
    "grid_dpo_grit": ("dpo", "grit"),
    "grid_cita": ("cita", "adamw"),
    "grid_cita_grit": ("cita", "grit"),
}
GRID_MODELS = ("llama3_8b", "mistral_7b", "gemma_7b", "deepseek_7b")
DELTAS = (0, 2, 4, 6, 8, 10, 20, 30, 50, 100)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_each_grid_cell_composes(cell, tmp_path):
    cfg = compose_cfg([f"experiment={cell}"], tmp_path, tmp_path)
    assert (cfg.method.name, cfg.optimizer.name) == CELLS[cell]
    assert cfg.tracking.tags["grid_cell"] == cell.removeprefix("grid_")


def sweep_jobs(experiment: str, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """The job override lists of `python train.py -m experiment=<experiment> *extra`, as Hydra's
    basic sweeper expands them (scripts/plan_sweep.py, the dry-run planner multirun.sh uses)."""
    from hydra import initialize_config_dir

    from alignment.config import register_configs

    sys.path.insert(0, str(REPO / "scripts"))
    from plan_sweep import expand

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return expand([f"experiment={experiment}", *extra])


def test_paper_grid_is_7_cells_times_4_models(tmp_path):
    jobs = sweep_jobs("paper_grid")
    assert len(jobs) == 28
    cells = {o.split("=")[1] for job in jobs for o in job if o.startswith("+experiment@_global_=")}
    models = {o.split("=")[1] for job in jobs for o in job if o.startswith("model=")}
    assert cells == set(CELLS) and models == set(GRID_MODELS)
    assert len({tuple(sorted(job)) for job in jobs}) == 28
    # Compose one job per cell (cycling through the models): each is its cell on its model.
    for i, cell in enumerate(CELLS):
        model = GRID_MODELS[i % len(GRID_MODELS)]
        (job,) = [j for j in jobs if f"+experiment@_global_={cell}" in j and f"model={model}" in j]
        cfg = compose_cfg(job, tmp_path, tmp_path)
        assert (cfg.method.name, cfg.optimizer.name, cfg.model.name) == (*CELLS[cell], model)
        assert cfg.tracking.tags["grid_cell"] == cell.removeprefix("grid_")
        assert cfg.tracking.experiment == "paper_grid"
        # scored by AQI in the same run, so that experiments/report.py has its metric
        assert cfg.eval_after_train and cfg.eval.suites() == ["aqi"]


def test_paper_grid_on_one_model_from_the_command_line():
    jobs = sweep_jobs("paper_grid", ("model=tiny",))
    assert len(jobs) == 7 and all("model=tiny" in job for job in jobs)


def test_factual_dpo_delta_grid_sweeps_the_ten_deltas_on_the_paper_models(tmp_path):
    jobs = sweep_jobs("factual_dpo_delta_grid")
    assert len(jobs) == len(DELTAS) * len(GRID_MODELS)
    models = {o.split("=")[1] for job in jobs for o in job if o.startswith("model=")}
    assert models == set(GRID_MODELS)  # the same list as the paper grid, from one file
    jobs = sweep_jobs("factual_dpo_delta_grid", ("model=llama3_8b",))
    deltas = [float(o.split("=")[1]) for job in jobs for o in job if o.startswith("method.delta=")]
    assert sorted(deltas) == list(DELTAS) and len(jobs) == len(DELTAS)
    cfg = compose_cfg(jobs[-1], tmp_path, tmp_path)
    assert (cfg.method.name, cfg.method.delta) == ("factual_dpo", 100.0)
    assert cfg.dataset.name == "factuality_prefs"  # the method's offline default data
    assert cfg.eval_after_train and cfg.eval.suites() == ["aqi", "truthfulqa"]  # the Δ curves
