"""Pairwise preference losses (DPO, Factual-DPO++, CITA): pure functions of sequence log-probs.

Shapes: every log-prob argument is (B,): summed response-token log-probs of the chosen (w) or
rejected (l) response under the policy (pi_theta) or the reference (pi_ref). Each function returns
a LossOutput whose `loss` is the batch mean and whose metrics are detached (B,) tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignment.losses.types import LossOutput


def _smoothed_sigmoid_loss(z: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """-(1 - eps) log sigma(z) - eps log sigma(-z) (conservative DPO, Mitchell 2023)."""
    if label_smoothing == 0.0:
        return -F.logsigmoid(z)
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def _reward_metrics(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, pc: torch.Tensor, pr: torch.Tensor
) -> dict[str, torch.Tensor]:
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margins": chosen_rewards - rejected_rewards,
        "rewards/accuracy": (chosen_rewards > rejected_rewards).float(),
        "logps/chosen": pc.detach(),
        "logps/rejected": pr.detach(),
    }


def factual_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    h_w: torch.Tensor,
    h_l: torch.Tensor,
    *,
    beta: float,
    delta: float,
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
    """
    logits = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    offset = delta * (h_l - h_w).to(logits.dtype)
    z = beta * (logits - offset) if delta_inside_beta else beta * logits - offset
    losses = _smoothed_sigmoid_loss(z, label_smoothing)
    metrics = _reward_metrics(
        beta * (policy_chosen_logps - ref_chosen_logps),
        beta * (policy_rejected_logps - ref_rejected_logps),
        policy_chosen_logps,
        policy_rejected_logps,
    )
    metrics["factual/offset"] = offset.detach()
    metrics["factual/z"] = z.detach()
    return LossOutput(losses.mean(), metrics)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Sigmoid DPO (Rafailov et al. 2023, arXiv 2305.18290, eq. 7).

        L = -log sigma(beta * [(log pi_theta(y_w) - log pi_ref(y_w))
                              - (log pi_theta(y_l) - log pi_ref(y_l))])

    with conservative-DPO label smoothing eps (Mitchell 2023; AIXpert's trainer). beta: 0.01-0.5
    (0.1 typical); a larger beta keeps the policy closer to the reference. Reference-free DPO
    passes zeros as the reference log-probs. With eps = 0 this equals TRL 1.16
    DPOTrainer(loss_type="sigmoid") on the same log-probs; TRL 1.16 ignores label_smoothing there.
    """
    zeros = torch.zeros_like(policy_chosen_logps)
    out = factual_dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        zeros,
        zeros,
        beta=beta,
        delta=0.0,
        label_smoothing=label_smoothing,
    )
    out.metrics.pop("factual/offset")
    out.metrics.pop("factual/z")
    return out


def cita_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    kl: torch.Tensor,
    *,
    beta: float,
    lambda_kl: float,
    reference_free: bool = True,
    log_eps: float = 0.0,
    chosen_nll: torch.Tensor | None = None,
    lambda_sft: float = 0.0,
) -> LossOutput:
    """CITA-KL (Ecliptica; spec/cita.md section 1).

        L = -log softmax([beta s+, beta s-])[0] + lambda_kl * KL + lambda_sft * NLL(y+)
          = softplus(-beta (s+ - s-)) + lambda_kl * KL + lambda_sft * NLL(y+)

    s+- are summed response log-probs conditioned on (instruction I, prompt X). reference_free
    (the paper) uses s = log pi_theta(y); reference_free=False (the "stacked" code) uses
    s = log pi_theta(y) - log pi_ref(y), which makes the first term DPO. `kl` () is the anchor
    estimate chosen by method.kl_estimator (see `seq_kl`); the reference's default is a signed
    log-ratio, not a true KL. log_eps > 0 reproduces the v1 code's -log(sigmoid + eps), which caps
    the loss near -log(eps). The correct gradient of the first term is -beta (1 - P+)(ds+ - ds-).
    beta ~0.1; lambda_kl 2e-4..1e-1 (code default 0.01).
    """
    if reference_free:
        s_w, s_l = policy_chosen_logps, policy_rejected_logps
    else:
        assert ref_chosen_logps is not None and ref_rejected_logps is not None
        s_w = policy_chosen_logps - ref_chosen_logps
        s_l = policy_rejected_logps - ref_rejected_logps
    margin = beta * (s_w - s_l)
    contrastive = (
        -F.logsigmoid(margin) if log_eps == 0 else -torch.log(torch.sigmoid(margin) + log_eps)
    )
    loss = contrastive.mean() + lambda_kl * kl
    metrics = _reward_metrics(beta * s_w, beta * s_l, policy_chosen_logps, policy_rejected_logps)
    metrics["cita/kl"] = kl.detach()
    metrics["cita/contrastive"] = contrastive.detach()
    if ref_chosen_logps is not None and ref_rejected_logps is not None:
        metrics["logps/ref_chosen"] = ref_chosen_logps.detach()
        metrics["logps/ref_rejected"] = ref_rejected_logps.detach()
    if lambda_sft > 0:
        assert chosen_nll is not None, "lambda_sft > 0 needs the chosen responses' NLL"
        loss = loss + lambda_sft * chosen_nll
        metrics["cita/sft_nll"] = chosen_nll.detach()
    return LossOutput(loss, metrics)


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
    It is NOT a KL divergence: it can be negative, and its gradient lowers both likelihoods.
    seq_sq (squared=True, plan7): 1/2 [mean_b((s+ - s+_ref)^2) + mean_b((s- - s-_ref)^2)] >= 0.
    """
    rw = policy_chosen_logps - ref_chosen_logps
    rl = policy_rejected_logps - ref_rejected_logps
    if squared:
        rw, rl = rw.square(), rl.square()
    return 0.5 * (rw.mean() + rl.mean())
