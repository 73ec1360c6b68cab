"""Pairwise preference losses (DPO, Factual-DPO++, CITA): pure functions of sequence log-probs.

Each function holds its method's whole objective, so a reader finds the maths in one place.
Shapes: every log-prob argument is (B,): summed response-token log-probs of the chosen (w) or
rejected (l) response under the policy (pi_theta) or the reference (pi_ref). Token counts are
(B,). Each function returns a LossOutput whose `loss` is the batch mean and whose metrics are
detached (B,) or () tensors. Argument names are the fields of `alignment.methods.PolicyBatch`,
which the method registry passes by name; keyword-only arguments are the method's config keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignment.losses.sft import sft_loss
from alignment.losses.types import LossOutput

KL_ESTIMATORS = ("seq_logratio", "seq_sq", "token_full_vocab")


def smoothed_sigmoid_loss(z: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """-(1 - eps) log sigma(z) - eps log sigma(-z) (conservative DPO, Mitchell 2023)."""
    if label_smoothing == 0.0:
        return -F.logsigmoid(z)
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def reward_metrics(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, pc: torch.Tensor, pr: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The diagnostics every pairwise loss logs: implicit rewards, margin, accuracy, log-probs."""
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margins": chosen_rewards - rejected_rewards,
        "rewards/accuracy": (chosen_rewards > rejected_rewards).float(),
        "logps/chosen": pc.detach(),
        "logps/rejected": pr.detach(),
    }


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    chosen_tokens: torch.Tensor | None = None,
    chosen_tokens_total: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    reference_free: bool = False,
    sft_weight: float = 0.0,
) -> LossOutput:
    """Sigmoid DPO (Rafailov et al. 2023, arXiv 2305.18290, eq. 7), plus an optional NLL term.

        L = -log sigma(beta * [(log pi_theta(y_w) - log pi_ref(y_w))
                              - (log pi_theta(y_l) - log pi_ref(y_l))])
            + sft_weight * NLL(y_w)

    with conservative-DPO label smoothing eps (Mitchell 2023; AIXpert's trainer). beta: 0.01-0.5
    (0.1 typical); a larger beta keeps the policy closer to the reference. reference_free: the
    reference log-probs are taken as 0 (TRL's `reference_free=True`), so no reference forward
    is needed. With eps = 0 this equals TRL 1.16 DPOTrainer(loss_type="sigmoid") on the same
    log-probs; TRL 1.16 ignores label_smoothing there.

    sft_weight > 0 adds the chosen responses' token-mean negative log-likelihood, -sum_b
    log pi_theta(y_w,b) / chosen tokens, as TRL's loss_type=["sigmoid", "sft"] with
    loss_weights=[1, sft_weight] computes it: the DPO+NLL loss of RPO (Pang et al. 2024, arXiv
    2404.19733; its alpha, 1 in the paper, which divides each winner by its own length). DPO alone
    can widen the margin by lowering y_l and hand the freed probability to a third answer; the
    NLL term makes the chosen answer itself more likely. The term is `sft_loss` (with its
    chosen_tokens_total, so gradient accumulation does not change it).

    Example: log-ratios +1 (chosen) and -1 (rejected) at beta 0.5 give z = 1 and
    L = softplus(-1) = log(1 + e^-1) = 0.3133.

    >>> t = torch.tensor
    >>> out = dpo_loss(t([1.0]), t([-1.0]), t([0.0]), t([0.0]), beta=0.5)
    >>> round(out.loss.item(), 4)
    0.3133
    """
    if reference_free:
        ref_chosen_logps = ref_rejected_logps = torch.zeros_like(policy_chosen_logps)
    assert ref_chosen_logps is not None and ref_rejected_logps is not None, "DPO needs pi_ref"
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    losses = smoothed_sigmoid_loss(beta * (chosen_ratio - rejected_ratio), label_smoothing)
    metrics = reward_metrics(
        beta * chosen_ratio, beta * rejected_ratio, policy_chosen_logps, policy_rejected_logps
    )
    loss = losses.mean()
    if sft_weight > 0:
        assert chosen_tokens is not None, "the NLL term needs the chosen responses' token counts"
        nll = sft_loss(policy_chosen_logps, chosen_tokens, chosen_tokens_total).loss
        loss = loss + sft_weight * nll
        metrics["dpo/sft_nll"] = nll.detach()
    return LossOutput(loss, metrics)


def factual_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    h_w: torch.Tensor,
    h_l: torch.Tensor,
    *,
    beta: float = 0.1,
    delta: float = 0.0,
    delta_inside_beta: bool = True,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Factual-DPO++ (Chaduvula et al., arXiv 2601.03027; AIXpert factualdpo_trainer.py).

        r_w = log pi_theta(y_w|x) - log pi_ref(y_w|x),  r_l likewise
        z   = beta * [(r_w - r_l) - delta * (h_l - h_w)]        (delta_inside_beta, AIXpert)
        z   = beta * (r_w - r_l) - delta * (h_l - h_w)          (SafeDPO reading, arXiv 2505.20065)
        L   = -(1 - eps) log sigma(z) - eps log sigma(-z)

    h_w, h_l (B,) in {0, 1}: 1 = the response is non-factual. With delta = 0 this is DPO. A
    (0, 1) pair (factual winner, hallucinated loser) needs a margin of delta more to reach the
    same loss; same-factuality pairs are plain DPO. beta ~0.1; delta in {0, 2, ..., 100}.

    Example: zero log-ratios, beta 0.1, delta 10, (h_w, h_l) = (0, 1): z = 0.1 * (0 - 10) = -1,
    L = softplus(1) = 1.3133.

    >>> z = torch.zeros(1)
    >>> round(factual_dpo_loss(z, z, z, z, z, z + 1, beta=0.1, delta=10.0).loss.item(), 4)
    1.3133
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    offset = delta * (h_l - h_w).to(chosen_ratio.dtype)
    margin = chosen_ratio - rejected_ratio
    z = beta * (margin - offset) if delta_inside_beta else beta * margin - offset
    losses = smoothed_sigmoid_loss(z, label_smoothing)
    metrics = reward_metrics(
        beta * chosen_ratio, beta * rejected_ratio, policy_chosen_logps, policy_rejected_logps
    )
    metrics["factual/offset"] = offset.detach()
    metrics["factual/z"] = z.detach()
    return LossOutput(losses.mean(), metrics)


def cita_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    token_kl_sum: torch.Tensor | None = None,
    chosen_tokens_total: torch.Tensor | None = None,
    response_tokens_total: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
    lambda_kl: float = 0.01,
    kl_estimator: str = "seq_logratio",
    reference_free: bool = True,
    log_eps: float = 0.0,
    lambda_sft: float = 0.0,
) -> LossOutput:
    """CITA-KL (Ecliptica; spec/cita.md section 1), with -log softmax([beta s+, beta s-])[0]:

        L = softplus(-beta (s+ - s-)) + lambda_kl * KL + lambda_sft * NLL(y+)

    s+- are summed response log-probs conditioned on (instruction I, prompt X). reference_free
    (the paper) uses s = log pi_theta(y); reference_free=False (the "stacked" code) uses
    s = log pi_theta(y) - log pi_ref(y), which makes the first term DPO. The anchor KL is chosen
    by kl_estimator (seq_logratio, seq_sq, token_full_vocab; see `_cita_anchor`). NLL(y+) is the
    token mean over the chosen responses, -sum_b s+_b / chosen_tokens_total. The *_total token
    counts are per micro-batch, averaged over the gradient-accumulation window (the trainer
    passes them), so accumulation does not change the gradient; absent, the batch's own counts
    are used. log_eps > 0 reproduces the v1 code's -log(sigmoid + eps), which caps the loss near
    -log(eps). beta ~0.1; lambda_kl 2e-4..1e-1 (code default 0.01).

    Example: s+ = -1, s- = -3, beta 0.5, lambda_kl = lambda_sft = 0: L = softplus(-1) = 0.3133.
    >>> t = torch.tensor
    >>> round(cita_loss(t([-1.0]), t([-3.0]), t([2.0]), beta=0.5, lambda_kl=0).loss.item(), 4)
    0.3133
    """
    pc, pr, rc, rr = (
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
    )
    s_w, s_l = (pc, pr) if reference_free else (pc - rc, pr - rr)
    margin = beta * (s_w - s_l)  # log_eps > 0: the v1 code's capped -log(sigmoid + eps)
    contrastive = -torch.log(torch.sigmoid(margin) + log_eps) if log_eps else -F.logsigmoid(margin)
    loss = contrastive.mean()
    metrics = reward_metrics(beta * s_w, beta * s_l, pc, pr)
    metrics["cita/contrastive"] = contrastive.detach()
    if lambda_kl > 0:
        kl = _cita_anchor(kl_estimator, pc, pr, rc, rr, token_kl_sum, response_tokens_total)
        loss = loss + lambda_kl * kl
        metrics["cita/kl"] = kl.detach()
    if rc is not None and rr is not None:
        metrics["logps/ref_chosen"], metrics["logps/ref_rejected"] = rc.detach(), rr.detach()
    if lambda_sft > 0:
        total = chosen_tokens.sum() if chosen_tokens_total is None else chosen_tokens_total
        nll = -pc.sum() / total.clamp(min=1)
        loss = loss + lambda_sft * nll
        metrics["cita/sft_nll"] = nll.detach()
    return LossOutput(loss, metrics)


def _cita_anchor(
    estimator: str,
    pc: torch.Tensor,
    pr: torch.Tensor,
    rc: torch.Tensor | None,
    rr: torch.Tensor | None,
    token_kl_sum: torch.Tensor | None,
    response_tokens_total: torch.Tensor | None,
) -> torch.Tensor:
    """CITA's anchor, shape ().

    seq_logratio: the reference code's 1/2 [mean_b(s+ - s+_ref) + mean_b(s- - s-_ref)], a signed
      log-ratio on the dataset responses. NOT a KL: it can be negative, and its gradient lowers
      both likelihoods.
    seq_sq: 1/2 [mean_b((s+ - s+_ref)^2) + mean_b((s- - s-_ref)^2)] >= 0 (plan7).
    token_full_vocab: the exact KL(pi_theta || pi_ref) over the vocabulary at every response
      position, token-averaged: token_kl_sum / response_tokens_total (the paper's equation).
    """
    if estimator == "token_full_vocab":
        assert token_kl_sum is not None, "kl_estimator=token_full_vocab needs token_kl_sum"
        assert response_tokens_total is not None, "token_full_vocab needs response_tokens_total"
        return token_kl_sum / response_tokens_total.clamp(min=1)
    assert rc is not None and rr is not None, f"kl_estimator={estimator} needs pi_ref log-probs"
    return seq_kl(pc, pr, rc, rr, squared=estimator == "seq_sq")


def seq_kl(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    squared: bool,
) -> torch.Tensor:
    """Sequence-level anchors of CITA on the dataset responses (off-policy), shape ().

    seq_logratio (squared=False, the reference code):
        1/2 [mean_b(s+ - s+_ref) + mean_b(s- - s-_ref)].
    seq_sq (squared=True, plan7): 1/2 [mean_b((s+ - s+_ref)^2) + mean_b((s- - s-_ref)^2)] >= 0.
    """
    rw = policy_chosen_logps - ref_chosen_logps
    rl = policy_rejected_logps - ref_rejected_logps
    if squared:
        rw, rl = rw.square(), rl.square()
    return 0.5 * (rw.mean() + rl.mean())
