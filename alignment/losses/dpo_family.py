"""The DPO family beside plain DPO: IPO, hinge, robust DPO, SimPO, ORPO, length-normalised DPO.

Shapes: every log-prob argument is (B,), the summed response-token log-probs of the chosen (w) or
rejected (l) response under the policy (pi_theta) or the reference (pi_ref); `chosen_tokens` and
`rejected_tokens` (B,) are the response token counts |y_w|, |y_l| (clamped at 1, as TRL does; the
data layer rejects empty responses). Each function returns a LossOutput whose `loss` is the batch
mean and whose metrics are detached (B,) tensors (or () for batch-level terms).

Implicit reward, one rule for all: `rewards/chosen` is beta times the per-response score that the
loss compares, so `rewards/accuracy` is the fraction of pairs the loss already ranks right and
`rewards/margins` is the quantity whose target the loss sets (1/beta for hinge, 1/2 for IPO,
gamma for SimPO). The score is the log-ratio r = log pi_theta(y) - log pi_ref(y) for hinge and
robust (TRL's rewards), r/|y| for IPO and sigmoid_norm (TRL logs beta*r there), and the average
log-prob log pi_theta(y)/|y| for the reference-free SimPO and ORPO (TRL's CPO/ORPO rewards).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignment.losses.preference import reward_metrics, smoothed_sigmoid_loss
from alignment.losses.types import LossOutput


def _per_token(logps: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    return logps / n_tokens.clamp(min=1).to(logps.dtype)


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", arXiv 2310.12036, eq. 17), per token as in TRL:

        h = (log pi_theta(y_w) - log pi_ref(y_w)) / |y_w|
            - (log pi_theta(y_l) - log pi_ref(y_l)) / |y_l|
        L = (h - 1 / (2 beta))^2

    beta is the paper's tau (TRL DPOConfig.beta, default 0.1): the regulariser; the loss pulls
    the per-token log-ratio margin h to exactly 1/(2 beta), so unlike DPO it stops pushing once
    a pair is separated enough (no overfitting to deterministic preferences). Typical 0.01-1.
    Deviation: eq. 17 uses whole-sequence log-ratios; like TRL (loss_type="ipo", which says the
    IPO authors confirmed the paper's results used it) we divide by the token counts so that beta
    does not depend on response length. Metric `ipo/h` is the margin h.

    By hand: log-ratios +2 over 2 tokens and -3 over 3 tokens give h = 1 - (-1) = 2; with
    beta = 0.5 the target is 1, so L = (2 - 1)^2 = 1.

    >>> import torch
    >>> t = torch.tensor
    >>> ipo_loss(t([-4.0]), t([-9.0]), t([-6.0]), t([-6.0]), t([2]), t([3]), beta=0.5).loss
    tensor(1.)
    """
    chosen = _per_token(policy_chosen_logps - ref_chosen_logps, chosen_tokens)
    rejected = _per_token(policy_rejected_logps - ref_rejected_logps, rejected_tokens)
    h = chosen - rejected
    losses = (h - 1 / (2 * beta)) ** 2
    metrics = reward_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )
    metrics["ipo/h"] = h.detach()
    return LossOutput(losses.mean(), metrics)


def hinge_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """Hinge loss on the DPO log-ratio margin (SLiC's calibration loss, Zhao et al. 2023,
    "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", arXiv 2305.10425, Sec. 2;
    with the reference-normalised likelihood of RSO, Liu et al. 2023, arXiv 2309.06657):

        L = max(0, 1 - beta * [(log pi_theta(y_w) - log pi_ref(y_w))
                               - (log pi_theta(y_l) - log pi_ref(y_l))])

    beta (TRL DPOConfig.beta, default 0.1) is the reciprocal of the margin delta = 1/beta that
    the log-ratio difference must clear; pairs beyond the margin give no gradient (metric
    `hinge/active` marks the pairs that still do). Typical 0.01-1. Equals TRL 1.16
    DPOTrainer(loss_type="hinge"); SLiC itself uses no reference and adds an SFT term, which
    this loss leaves out (as TRL does).

    By hand: log-ratios +1 and -1 give a margin of 2; beta = 0.1: L = 1 - 0.2 = 0.8.

    >>> import torch
    >>> t = torch.tensor
    >>> hinge_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.1).loss
    tensor(0.8000)
    """
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    gap = 1 - beta * (chosen - rejected)
    metrics = reward_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )
    metrics["hinge/active"] = (gap > 0).float().detach()
    return LossOutput(torch.relu(gap).mean(), metrics)


def robust_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
) -> LossOutput:
    """Robust DPO, rDPO (Chowdhury, Kini & Natarajan 2024, "Provably Robust DPO: Aligning
    Language Models with Noisy Feedback", arXiv 2403.00409, Sec. 3, the de-biased loss):

        z = beta * [(log pi_theta(y_w) - log pi_ref(y_w)) - (log pi_theta(y_l) - log pi_ref(y_l))]
        L = [(1 - eps) * (-log sigma(z)) - eps * (-log sigma(-z))] / (1 - 2 eps)

    eps = label_smoothing (TRL DPOConfig.label_smoothing) is the assumed probability that a
    preference label was flipped, in [0, 0.5); the default 0.1 is the value the paper and TRL's
    docs recommend (TRL's own default 0.0 makes this plain DPO). beta as in DPO (TRL default 0.1).
    The loss is an unbiased estimate of the clean DPO loss under random flips, so unlike
    conservative DPO's smoothing it subtracts the flipped term and can be negative. Equals TRL
    1.16 DPOTrainer(loss_type="robust"). Metric `robust/dpo` is the per-pair sigmoid DPO loss.

    By hand: z = ln 3 (sigma(z) = 3/4), eps = 1/4:
        L = (0.75 ln(4/3) - 0.25 ln 4) / 0.5 = 0.4315231 - 0.6931472 = -0.2616241.

    >>> import math, torch
    >>> z = torch.zeros(1)
    >>> robust_loss(torch.tensor([math.log(3)]), z, z, z, beta=1.0, label_smoothing=0.25).loss
    tensor(-0.2616)
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust_loss: label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    z = beta * (chosen - rejected)
    clean, flipped = -F.logsigmoid(z), -F.logsigmoid(-z)
    losses = ((1 - label_smoothing) * clean - label_smoothing * flipped) / (1 - 2 * label_smoothing)
    metrics = reward_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )
    metrics["robust/dpo"] = clean.detach()
    return LossOutput(losses.mean(), metrics)


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """SimPO (Meng, Xia & Chen 2024, "SimPO: Simple Preference Optimization with a
    Reference-Free Reward", arXiv 2405.14734, eq. 6; reward eq. 4), reference-free:

        z = beta / |y_w| * log pi_theta(y_w) - beta / |y_l| * log pi_theta(y_l) - gamma
        L = -(1 - eps) log sigma(z) - eps log sigma(-z)

    beta (TRL CPOConfig.beta) scales the average log-prob reward; gamma (TRL
    CPOConfig.simpo_gamma) is the target reward margin; eps (TRL CPOConfig.label_smoothing) the
    conservative smoothing of the SimPO code, 0 in the paper. Defaults beta = 2.0, gamma = 1.0
    (gamma/beta = 0.5) follow the SimPO recipes; the paper tunes beta in 2-10 and gamma in
    0.3-1.6. TRL's CPOConfig defaults (beta 0.1, simpo_gamma 0.5) are CPO's, not SimPO's.
    No reference: the reward is the policy's own length-normalised likelihood, the quantity
    generation ranks by. Equals TRL 1.16 CPOTrainer(loss_type="simpo", cpo_alpha=0), which
    writes z as beta * (avg_w - avg_l - gamma / beta). Metric `simpo/z` is z.

    By hand: log-probs -2 over 2 tokens and -6 over 3 tokens average -1 and -2; beta = 2,
    gamma = 1: z = 2 * 1 - 1 = 1, L = log(1 + e^-1) = 0.3132617.

    >>> import torch
    >>> t = torch.tensor
    >>> simpo_loss(t([-2.0]), t([-6.0]), t([2]), t([3]), beta=2.0, gamma=1.0).loss
    tensor(0.3133)
    """
    chosen = _per_token(policy_chosen_logps, chosen_tokens)
    rejected = _per_token(policy_rejected_logps, rejected_tokens)
    z = beta * (chosen - rejected) - gamma
    losses = smoothed_sigmoid_loss(z, label_smoothing)
    metrics = reward_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )
    metrics["simpo/z"] = z.detach()
    return LossOutput(losses.mean(), metrics)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - e^x) for x < 0, switching form at -ln 2 to avoid cancellation (Maechler 2012)."""
    return torch.where(
        x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x))
    )


def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    chosen_tokens_total: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
) -> LossOutput:
    """ORPO (Hong, Lee & Thorne 2024, "ORPO: Monolithic Preference Optimization without
    Reference Model", arXiv 2403.07691, eqs. 6-7), no reference:

        P(y) = exp(log pi_theta(y) / |y|),  odds(y) = P(y) / (1 - P(y))
        L_OR  = -log sigma(log odds(y_w) - log odds(y_l))
        L_SFT = -sum_b log pi_theta(y_w,b) / sum_b |y_w,b|   (token-mean NLL of the chosen)
        L = L_SFT + beta * mean_b L_OR

    beta is the paper's lambda (TRL ORPOConfig.beta, default 0.1 = the paper's value for Phi-2
    and Llama-2; 0.2 for Mistral): the weight of the odds-ratio penalty on the SFT loss. The
    odds ratio is milder than DPO's probability ratio, so SFT and the penalty train together in
    one stage. Deviation: TRL's ORPOTrainer takes the NLL over prompt and response tokens; the
    paper's L_SFT (and this loss) covers the response only. chosen_tokens_total, when given,
    replaces sum_b |y_w,b| (the trainer's token count of the accumulation window, as in
    `sft_loss`), so accumulation does not change the gradient. Metrics: `orpo/log_odds` (B,),
    `orpo/or_loss` (B,), `orpo/nll` ().

    By hand: average log-probs -ln 2 and -ln 5 give P = 1/2, 1/5, odds 1 and 1/4, log odds ratio
    ln 4, L_OR = -ln(4/5) = 0.2231436; one pair of 2 tokens: L_SFT = ln 2 = 0.6931472;
    beta = 0.1: L = 0.6931472 + 0.0223144 = 0.7154615.

    >>> import math, torch
    >>> t = torch.tensor
    >>> out = orpo_loss(t([-2 * math.log(2)]), t([-math.log(5)]), t([2]), t([1]), beta=0.1)
    >>> round(out.loss.item(), 6)
    0.715462
    """
    # Upcast half precision: log1mexp of an average log-prob near 0 cancels badly in bf16.
    dtype = torch.promote_types(policy_chosen_logps.dtype, torch.float32)
    chosen = _per_token(policy_chosen_logps.to(dtype), chosen_tokens)
    rejected = _per_token(policy_rejected_logps.to(dtype), rejected_tokens)
    log_odds = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))
    or_loss = -F.logsigmoid(log_odds)
    total = chosen_tokens.sum() if chosen_tokens_total is None else chosen_tokens_total
    nll = -policy_chosen_logps.sum() / total.clamp(min=1)
    metrics = reward_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )
    metrics.update({"orpo/log_odds": log_odds.detach(), "orpo/or_loss": or_loss.detach()})
    metrics["orpo/nll"] = nll.detach()
    return LossOutput(nll + beta * or_loss.mean(), metrics)


def sigmoid_norm_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    *,
    beta: float = 5.0,
) -> LossOutput:
    """Length-normalised DPO (Lambert et al. 2024, "Tulu 3: Pushing Frontiers in Open Language
    Model Post-Training", arXiv 2411.15124, Sec. 5.1.2 eq. 6; after SimPO's eq. 4 reward):

        z = beta * [(log pi_theta(y_w) - log pi_ref(y_w)) / |y_w|
                    - (log pi_theta(y_l) - log pi_ref(y_l)) / |y_l|]
        L = -log sigma(z)

    DPO on per-token log-ratios, so a longer response earns no larger reward. beta (TRL
    DPOConfig.beta): the default 5.0 is Tulu 3's; TRL's generic 0.1 is far too weak for per-token
    log-ratios (typical 2-10). Equals TRL 1.16 DPOTrainer(loss_type="sigmoid_norm"). Passing
    zero reference log-probs gives SimPO with gamma = 0. Metric `sigmoid_norm/z` is z.

    By hand: log-ratios +2 over 2 tokens and -3 over 3 tokens: per-token 1 and -1; beta = 0.5:
    z = 1, L = log(1 + e^-1) = 0.3132617.

    >>> import torch
    >>> t = torch.tensor
    >>> sigmoid_norm_loss(t([-4.0]), t([-9.0]), t([-6.0]), t([-6.0]), t([2]), t([3]), beta=0.5).loss
    tensor(0.3133)
    """
    chosen = _per_token(policy_chosen_logps - ref_chosen_logps, chosen_tokens)
    rejected = _per_token(policy_rejected_logps - ref_rejected_logps, rejected_tokens)
    z = beta * (chosen - rejected)
    metrics = reward_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )
    metrics["sigmoid_norm/z"] = z.detach()
    return LossOutput(-F.logsigmoid(z).mean(), metrics)
