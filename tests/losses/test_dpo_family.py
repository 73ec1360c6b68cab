"""The DPO-family losses against TRL 1.16's own computation, and properties that can fail.

Parity (float64, within 1e-6) calls TRL's code, never a copy of its formula:
- ipo, hinge, robust, sigmoid_norm: `DPOTrainer._compute_loss` on a bare trainer whose model
  returns fixed per-token log-probs (zero on padding), with the reference log-probs in the batch
  (TRL's precompute path) and a completion mask whose row sums are the token counts;
- simpo: `CPOTrainer.get_batch_loss_metrics` (loss_type="simpo", cpo_alpha=0) on a model that
  returns fixed logits, so TRL's own `get_batch_logps(average_log_prob=True)` does the averaging;
- orpo: `ORPOTrainer.get_batch_loss_metrics` the same way: TRL's `odds_ratio_loss` plus its NLL.
  TRL takes that NLL over prompt and response; with a one-token prompt (never a target) the two
  coincide, which is the case tested (the deviation is documented in `orpo_loss`).
Our side gets the same log-probs: summed per-token log-probs and counts of the response tokens.

Hand values live in the doctests of alignment/losses/dpo_family.py; the identities used below:
softplus(z) - softplus(-z) = z (swapping a pair of a sigmoid loss adds z), and for robust DPO
L(z) - L(-z) = -z / (1 - 2 eps).
"""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl import DPOTrainer
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

from alignment.losses import dpo_loss, sft_loss
from alignment.losses.dpo_family import (
    hinge_loss,
    ipo_loss,
    orpo_loss,
    robust_loss,
    sigmoid_norm_loss,
    simpo_loss,
)

T = torch.tensor
IDENTITY = lambda x: x  # noqa: E731
ACCEL = SimpleNamespace(gather_for_metrics=IDENTITY, gather=IDENTITY, device="cpu")


# --- TRL harnesses -------------------------------------------------------------------------------


class FixedLogprobModel(torch.nn.Module):
    """Stands in for TRL's fused-LM-head forward: returns the given per-token log-probs."""

    def __init__(self, per_token: torch.Tensor) -> None:
        super().__init__()
        self.per_token = per_token

    def forward(self, **kwargs):
        t = self.per_token
        zeros = torch.zeros_like(t)
        return SimpleNamespace(log_probs=t, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def trl_dpo_loss(loss_type, per_token, n_tokens, ref_c, ref_r, beta, label_smoothing=0.0):
    """DPOTrainer._compute_loss on rows [chosen; rejected] of per-token log-probs (2B, T)."""
    trainer = object.__new__(DPOTrainer)
    model = FixedLogprobModel(per_token).train()
    trainer.__dict__.update(
        model=model,
        ref_model=None,
        beta=beta,
        label_smoothing=label_smoothing,
        loss_types=[loss_type],
        loss_weights=[1.0],
        f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=1.0,
        ld_alpha=None,
        use_weighting=False,
        precompute_ref_logps=True,
        aux_loss_enabled=False,
        router_aux_loss_coef=0.0,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        accelerator=ACCEL,
    )
    rows, width = per_token.shape
    response = (torch.arange(width) < n_tokens.unsqueeze(1)).long()
    # Column 0 is the prompt token; completion_mask[:, 1:] lines up with the per-token log-probs.
    completion_mask = torch.cat([torch.zeros(rows, 1, dtype=torch.long), response], dim=1)
    inputs = {
        "input_ids": torch.ones(rows, width + 1, dtype=torch.long),
        "attention_mask": torch.ones(rows, width + 1, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_c,
        "ref_rejected_logps": ref_r,
    }
    return trainer._compute_loss(model, inputs, return_outputs=False)


def random_pairs(seed: int, pairs: int = 4, width: int = 7):
    """Per-token log-probs (2B, width), zero past each row's length; lengths vary across rows."""
    g = torch.Generator().manual_seed(seed)
    n_tokens = torch.randint(1, width + 1, (2 * pairs,), generator=g)
    n_tokens[0], n_tokens[pairs] = width, 1  # the extremes: a full row and a one-token response
    per_token = -torch.rand(2 * pairs, width, generator=g, dtype=torch.float64) * 3
    per_token = per_token * (torch.arange(width) < n_tokens.unsqueeze(1))
    ref_c = -torch.rand(pairs, generator=g, dtype=torch.float64) * 12
    ref_r = -torch.rand(pairs, generator=g, dtype=torch.float64) * 12
    return per_token, n_tokens, ref_c, ref_r


class FixedLogitsModel(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, attention_mask=None, use_cache=False, **kwargs):
        assert input_ids.shape == self.logits.shape[:2]
        return SimpleNamespace(logits=self.logits)


def token_batch(seed: int, pairs: int = 3, width: int = 8, vocab: int = 11):
    """A TRL-style paired batch with a one-token prompt, right padding and varying lengths,
    the logits a model returns for it, and our inputs: summed response log-probs and counts."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, width + 1, (2 * pairs,), generator=g)  # prompt token + response
    lengths[0] = width
    ids = torch.randint(1, vocab, (2 * pairs, width), generator=g)
    attention = (torch.arange(width) < lengths.unsqueeze(1)).long()
    ids = ids * attention
    labels = ids.masked_fill(attention == 0, -100)
    labels[:, 0] = -100  # the prompt
    logits = torch.randn(2 * pairs, width, vocab, generator=g, dtype=torch.float64) * 2
    batch = {}
    for side, rows in (("chosen", slice(0, pairs)), ("rejected", slice(pairs, 2 * pairs))):
        batch[f"{side}_input_ids"] = ids[rows]
        batch[f"{side}_attention_mask"] = attention[rows]
        batch[f"{side}_labels"] = labels[rows]
    targets, mask = labels[:, 1:], labels[:, 1:] != -100
    per_token = torch.log_softmax(logits[:, :-1], -1).gather(-1, targets.clamp(min=0)[..., None])
    logps = (per_token.squeeze(-1) * mask).sum(-1)
    return batch, logits, logps, mask.sum(-1)


def bare(cls, **attrs):
    trainer = object.__new__(cls)
    trainer.__dict__.update(is_encoder_decoder=False, aux_loss_enabled=False, accelerator=ACCEL)
    trainer.__dict__.update(attrs)
    return trainer


# --- parity with TRL ----------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_ipo_hinge_sigmoid_norm_equal_trl(beta, seed):
    per_token, n, ref_c, ref_r = random_pairs(seed)
    logps = per_token.sum(1)
    pc, pr, nc, nr = logps[:4], logps[4:], n[:4], n[4:]
    ours = {
        "ipo": ipo_loss(pc, pr, ref_c, ref_r, nc, nr, beta=beta),
        "hinge": hinge_loss(pc, pr, ref_c, ref_r, beta=beta),
        "sigmoid_norm": sigmoid_norm_loss(pc, pr, ref_c, ref_r, nc, nr, beta=beta),
    }
    for loss_type, out in ours.items():
        expected = trl_dpo_loss(loss_type, per_token, n, ref_c, ref_r, beta)
        assert abs(out.loss.item() - expected.item()) < 1e-6, loss_type


@pytest.mark.parametrize("beta,eps", [(0.1, 0.1), (0.5, 0.3), (0.1, 0.0), (1.0, 0.45)])
def test_robust_equals_trl(beta, eps):
    per_token, n, ref_c, ref_r = random_pairs(2)
    logps = per_token.sum(1)
    ours = robust_loss(logps[:4], logps[4:], ref_c, ref_r, beta=beta, label_smoothing=eps)
    expected = trl_dpo_loss("robust", per_token, n, ref_c, ref_r, beta, label_smoothing=eps)
    assert abs(ours.loss.item() - expected.item()) < 1e-6


@pytest.mark.parametrize("beta,gamma,eps", [(2.0, 1.0, 0.0), (0.1, 0.5, 0.0), (2.5, 0.3, 0.1)])
def test_simpo_equals_trl_cpo(beta, gamma, eps):
    batch, logits, logps, n = token_batch(3)
    trainer = bare(
        CPOTrainer,
        pad_token_id=0,
        loss_type="simpo",
        beta=beta,
        simpo_gamma=gamma,
        label_smoothing=eps,
        cpo_alpha=0.0,
        alpha=0.0,
    )
    expected, metrics = trainer.get_batch_loss_metrics(FixedLogitsModel(logits), batch)
    out = simpo_loss(
        logps[:3], logps[3:], n[:3], n[3:], beta=beta, gamma=gamma, label_smoothing=eps
    )
    assert abs(out.loss.item() - expected.item()) < 1e-6
    # TRL's rewards are beta times the average log-probs, as ours.
    assert abs(out.metrics["rewards/chosen"].mean().item() - metrics["rewards/chosen"]) < 1e-6


@pytest.mark.parametrize("beta", [0.1, 0.2, 1.0])
@pytest.mark.parametrize("seed", [4, 5])
def test_orpo_equals_trl(beta, seed):
    batch, logits, logps, n = token_batch(seed)
    trainer = bare(ORPOTrainer, padding_value=0, beta=beta)
    expected, metrics = trainer.get_batch_loss_metrics(FixedLogitsModel(logits), batch)
    out = orpo_loss(logps[:3], logps[3:], n[:3], n[3:], beta=beta)
    # TRL's odds-ratio term runs in float32 (it calls .float()): 1e-6 is still far below it.
    assert abs(out.loss.item() - expected.item()) < 1e-6
    assert abs(out.metrics["orpo/nll"].item() - metrics["nll_loss"]) < 1e-6
    assert abs(out.metrics["orpo/log_odds"].mean().item() - metrics["log_odds_chosen"]) < 1e-5


# --- properties ---------------------------------------------------------------------------------

PAIR = dict(pc=T([-4.0]), pr=T([-9.0]), rc=T([-6.0]), rr=T([-6.0]), nc=T([2]), nr=T([3]))


def call(name, pc, pr, rc, rr, nc, nr, **hp):
    """Each loss on one set of inputs (it takes only the tensors it needs)."""
    return {
        "ipo": lambda: ipo_loss(pc, pr, rc, rr, nc, nr, **hp),
        "hinge": lambda: hinge_loss(pc, pr, rc, rr, **hp),
        "robust": lambda: robust_loss(pc, pr, rc, rr, **hp),
        "simpo": lambda: simpo_loss(pc, pr, nc, nr, **hp),
        "orpo": lambda: orpo_loss(pc, pr, nc, nr, **hp),
        "sigmoid_norm": lambda: sigmoid_norm_loss(pc, pr, rc, rr, nc, nr, **hp),
    }[name]()


NAMES = ["ipo", "hinge", "robust", "simpo", "orpo", "sigmoid_norm"]


@pytest.mark.parametrize("name", NAMES)
def test_raising_chosen_lowers_and_raising_rejected_raises_the_loss(name):
    # A pair the loss has not yet separated (DPO margin -0.5, per-token margin below IPO's target).
    pc, pr = T([-7.0], requires_grad=True), T([-8.0], requires_grad=True)
    args = dict(PAIR, pc=pc, pr=pr, rc=T([-6.0]), rr=T([-7.5]))
    call(name, **args).loss.backward()
    assert pc.grad.item() < 0
    if name != "orpo":  # ORPO's NLL term does not see the rejected response; OR alone is checked
        assert pr.grad.item() > 0


def test_orpo_gradient_signs_of_the_odds_ratio_term():
    pc, pr = T([-6.0], requires_grad=True), T([-3.0], requires_grad=True)
    out = orpo_loss(pc, pr, T([3]), T([3]), beta=1.0)
    (out.loss - (-pc.sum() / 3)).backward()  # minus the NLL leaves beta * L_OR
    assert pc.grad.item() < 0 < pr.grad.item()


def test_ipo_pushes_back_beyond_its_target():
    """Unlike DPO, IPO pulls the margin to 1/(2 beta): past it the chosen gradient is positive."""
    pc = T([-1.0], requires_grad=True)  # per-token margin h = 2.5 + 1 = 3.5 > 1/(2*0.5) = 1
    out = ipo_loss(pc, T([-9.0]), T([-6.0]), T([-6.0]), T([2]), T([3]), beta=0.5)
    out.loss.backward()
    assert pc.grad.item() > 0
    assert abs(out.loss.item() - (3.5 - 1) ** 2) < 1e-6
    assert abs(out.metrics["ipo/h"].item() - 3.5) < 1e-6


# PAIR: log-ratios +2 (2 tokens) and -3 (3 tokens); policy averages -2 and -3.
SWAPPED = dict(
    pc=PAIR["pr"], pr=PAIR["pc"], rc=PAIR["rr"], rr=PAIR["rc"], nc=PAIR["nr"], nr=PAIR["nc"]
)


@pytest.mark.parametrize(
    "name,hp,delta",
    [
        ("simpo", dict(beta=2.0, gamma=0.0), 2.0 * (-2 - (-3))),  # z = 2
        ("sigmoid_norm", dict(beta=0.5), 0.5 * (1 - (-1))),  # z = 1
        ("robust", dict(beta=0.7, label_smoothing=0.2), 0.7 * (2 - (-3)) / (1 - 0.4)),
    ],
)
def test_swapped_pair_of_a_sigmoid_loss_adds_z(name, hp, delta):
    base, swapped = call(name, **PAIR, **hp), call(name, **SWAPPED, **hp)
    assert abs((swapped.loss - base.loss).item() - delta) < 1e-5
    assert base.metrics["rewards/accuracy"].item() == 1.0
    assert swapped.metrics["rewards/accuracy"].item() == 0.0


def test_swapped_pair_hinge_and_ipo():
    swap = SWAPPED
    # DPO margin 2 - (-3) = 5 -> -5; beta 0.1: hinge 1 - 0.5 = 0.5 -> 1 + 0.5 = 1.5
    assert abs(call("hinge", **PAIR, beta=0.1).loss.item() - 0.5) < 1e-6
    assert abs(call("hinge", **swap, beta=0.1).loss.item() - 1.5) < 1e-6
    # per-token margin 2 -> -2, target 1: (2 - 1)^2 = 1 -> (-2 - 1)^2 = 9
    assert abs(call("ipo", **swap, beta=0.5).loss.item() - 9.0) < 1e-6


def test_beta_limits():
    ln2 = math.log(2)
    assert abs(call("sigmoid_norm", **PAIR, beta=1e-9).loss.item() - ln2) < 1e-6
    assert abs(call("robust", **PAIR, beta=1e-9, label_smoothing=0.3).loss.item() - ln2) < 1e-6
    assert abs(call("hinge", **PAIR, beta=1e-9).loss.item() - 1.0) < 1e-6
    # SimPO as beta -> 0: only the margin is left, -log sigma(-gamma) = softplus(gamma)
    assert (
        abs(call("simpo", **PAIR, beta=1e-9, gamma=0.5).loss.item() - math.log1p(math.e**0.5))
        < 1e-6
    )
    # IPO as beta -> infinity: target 0, the loss is h^2 = 4
    assert abs(call("ipo", **PAIR, beta=1e9).loss.item() - 4.0) < 1e-6
    # ORPO with beta = 0 is SFT on the chosen responses
    pc, nc = T([-3.0, -8.0]), T([2, 5])
    orpo = orpo_loss(pc, T([-5.0, -1.0]), nc, T([4, 1]), beta=0.0)
    assert abs(orpo.loss.item() - sft_loss(pc, nc).loss.item()) < 1e-7


def test_robust_without_noise_is_sigmoid_dpo_and_rejects_bad_eps():
    g = torch.Generator().manual_seed(7)
    pc, pr, rc, rr = (-torch.rand(6, generator=g, dtype=torch.float64) * 10 for _ in range(4))
    robust = robust_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.0).loss
    assert abs(robust.item() - dpo_loss(pc, pr, rc, rr, beta=0.3).loss.item()) < 1e-12
    for eps in (0.5, -0.1):
        with pytest.raises(ValueError, match="label_smoothing"):
            robust_loss(pc, pr, rc, rr, label_smoothing=eps)


def test_simpo_without_margin_is_reference_free_sigmoid_norm():
    g = torch.Generator().manual_seed(8)
    pc, pr = (-torch.rand(5, generator=g, dtype=torch.float64) * 20 for _ in range(2))
    nc, nr = torch.randint(1, 9, (5,), generator=g), torch.randint(1, 9, (5,), generator=g)
    zero = torch.zeros(5, dtype=torch.float64)
    simpo = simpo_loss(pc, pr, nc, nr, beta=2.0, gamma=0.0).loss
    norm = sigmoid_norm_loss(pc, pr, zero, zero, nc, nr, beta=2.0).loss
    assert abs(simpo.item() - norm.item()) < 1e-12
    # ... and sigmoid_norm on one-token responses is DPO.
    ones = torch.ones(5, dtype=torch.long)
    rc, rr = (-torch.rand(5, generator=g, dtype=torch.float64) * 20 for _ in range(2))
    norm1 = sigmoid_norm_loss(pc, pr, rc, rr, ones, ones, beta=0.1).loss
    assert abs(norm1.item() - dpo_loss(pc, pr, rc, rr, beta=0.1).loss.item()) < 1e-12


@pytest.mark.parametrize("name", ["ipo", "simpo", "sigmoid_norm", "orpo"])
def test_length_normalised_losses_ignore_uniform_length(name):
    """Repeating every response k times (k x the log-prob, k x the tokens) changes nothing;
    a loss that forgot to divide by the token count would change."""
    k = 3
    longer = {key: v * k for key, v in PAIR.items()}
    hp = dict(beta=0.5)
    assert abs(call(name, **PAIR, **hp).loss.item() - call(name, **longer, **hp).loss.item()) < 1e-6
    dpo_short = dpo_loss(PAIR["pc"], PAIR["pr"], PAIR["rc"], PAIR["rr"], beta=0.5).loss
    dpo_long = dpo_loss(longer["pc"], longer["pr"], longer["rc"], longer["rr"], beta=0.5).loss
    assert abs(dpo_short.item() - dpo_long.item()) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_metrics_are_detached_per_pair_and_named(name):
    pairs = dict(
        pc=T([-4.0, -2.0]),
        pr=T([-9.0, -1.0]),
        rc=T([-6.0, -2.5]),
        rr=T([-6.0, -1.0]),
        nc=T([2, 4]),
        nr=T([3, 1]),
    )
    pairs["pc"].requires_grad_(True)
    hp = {"robust": dict(label_smoothing=0.1)}.get(name, {})
    out = call(name, **pairs, **hp)
    assert out.loss.shape == () and out.loss.requires_grad
    for key in ("chosen", "rejected", "margins", "accuracy"):
        assert out.metrics[f"rewards/{key}"].shape == (2,)
    assert {"logps/chosen", "logps/rejected"} <= out.metrics.keys()
    assert any(k.startswith(f"{name}/") for k in out.metrics), "a method-specific term"
    assert not any(v.requires_grad for v in out.metrics.values())
    m = out.metrics
    margin = m["rewards/chosen"] - m["rewards/rejected"]
    assert torch.equal(m["rewards/margins"], margin)
    assert torch.equal(m["rewards/accuracy"], (margin > 0).float())


def test_orpo_is_finite_for_long_unlikely_and_near_certain_responses():
    pc = T([-5000.0, -1e-6], requires_grad=True)
    out = orpo_loss(pc, T([-4000.0, -2.0]), T([100, 1]), T([100, 1]), beta=0.1)
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and torch.isfinite(pc.grad).all()


def test_orpo_upcasts_half_precision():
    pc, pr = T([-0.02], dtype=torch.bfloat16), T([-0.5], dtype=torch.bfloat16)
    out16 = orpo_loss(pc, pr, T([1]), T([1]))
    out32 = orpo_loss(pc.float(), pr.float(), T([1]), T([1]))
    assert abs(out16.metrics["orpo/log_odds"].item() - out32.metrics["orpo/log_odds"].item()) < 1e-6
