"""The paper grid's methods: baseline, sft, dpo, factual_dpo and cita (schema + registry entry).

Each schema lists exactly the config keys of its method: the loss's keyword arguments plus any
`data_keys` the data preparation reads. The maths lives in alignment/losses/.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignment.config.checks import check, check_choice
from alignment.config.method import MethodConfig
from alignment.data.sources import flip_unfactual_winners
from alignment.losses import cita_loss, dpo_loss, factual_dpo_loss, sft_loss
from alignment.losses.preference import KL_ESTIMATORS
from alignment.methods.registry import Method, always, register


def check_beta_smoothing(beta: float, label_smoothing: float) -> None:
    check("method.beta", beta, gt=0)
    check("method.label_smoothing", label_smoothing, ge=0, lt=0.5)


@dataclass
class BaselineConfig(MethodConfig):
    """No training: the base model is evaluated as it is."""


@dataclass
class SftConfig(MethodConfig):
    """Supervised fine-tuning on the chosen response (masked negative log-likelihood)."""


@dataclass
class DpoConfig(MethodConfig):
    """Sigmoid DPO (Rafailov et al. 2023, eq. 7). beta: 0.01-0.5, typically 0.1.

    reference_free: pi_ref log-probs taken as 0 (no reference forward).
    sft_weight: weight of the chosen responses' token-mean NLL added to the loss (0 = plain DPO;
      RPO's alpha, TRL's loss_type=[sigmoid, sft] with loss_weights=[1, sft_weight]).
    """

    beta: float = 0.1
    label_smoothing: float = 0.0
    reference_free: bool = False
    sft_weight: float = 0.0

    def __post_init__(self) -> None:
        check_beta_smoothing(self.beta, self.label_smoothing)
        check("method.sft_weight", self.sft_weight, ge=0)


@dataclass
class CitaConfig(MethodConfig):
    """CITA-KL (Ecliptica): contrastive term plus lambda_kl times a KL-style anchor.

    kl_estimator:
      seq_logratio: the reference code's signed sequence log-ratio on the dataset responses. It is
        NOT a KL divergence and can be negative; default for parity with the reference.
      seq_sq: mean squared sequence log-ratio (plan7), >= 0.
      token_full_vocab: exact per-position KL over the vocabulary along the response tokens,
        averaged over tokens (the paper's equation), computed in chunks.
    reference_free: true = the paper's contrastive term; false = the "stacked" variant that uses
      reference log-ratios (then the contrastive term is DPO).
    log_eps: 0 = stable -logsigmoid; 1e-10 reproduces the v1 code's -log(softmax + 1e-10) cap.
    use_instruction: false is the NoInstruct ablation (the system instruction is dropped).
    """

    beta: float = 0.1
    lambda_kl: float = 0.01
    kl_estimator: str = "seq_logratio"
    reference_free: bool = True
    lambda_sft: float = 0.0
    log_eps: float = 0.0
    use_instruction: bool = True

    def __post_init__(self) -> None:
        check("method.beta", self.beta, gt=0)
        check_choice("method.kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        for key in ("lambda_kl", "lambda_sft", "log_eps"):
            check(f"method.{key}", getattr(self, key), ge=0)


@dataclass
class FactualDpoConfig(MethodConfig):
    """Factual-DPO++ (AIXpert): z = beta * [(r_w - r_l) - delta * (h_l - h_w)].

    delta_inside_beta: true = AIXpert (logit offset beta*delta); false = SafeDPO (offset delta).
    flip_unfactual_winner: swap chosen/rejected of (h_w, h_l) = (1, 0) pairs before training.
    """

    beta: float = 0.1
    delta: float = 0.0
    delta_inside_beta: bool = True
    flip_unfactual_winner: bool = True
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        check_beta_smoothing(self.beta, self.label_smoothing)
        check("method.delta", self.delta, ge=0)


def _flip(cfg: FactualDpoConfig, examples: list) -> tuple[list, dict[str, int]]:
    """Bucket counts always; the (1, 0) -> (0, 1) flip only when flip_unfactual_winner is on."""
    flipped, counts = flip_unfactual_winners(examples)
    if not cfg.flip_unfactual_winner:
        counts["flipped"] = 0
        return examples, counts
    return flipped, counts


def _cita_needs_reference(cfg: CitaConfig) -> bool:
    # The stacked contrastive term and the sequence anchors read pi_ref log-probs; the
    # token_full_vocab anchor reads pi_ref logits (a forward of its own).
    return not cfg.reference_free or cfg.lambda_kl > 0


register(Method("baseline", BaselineConfig, None, needs_pairs=False))
register(Method("sft", SftConfig, sft_loss, needs_pairs=False))
register(Method("dpo", DpoConfig, dpo_loss, needs_reference=lambda cfg: not cfg.reference_free))
register(
    Method(
        "factual_dpo",
        FactualDpoConfig,
        factual_dpo_loss,
        needs_reference=always,
        needs_flags=lambda cfg: cfg.delta != 0,
        transform=_flip,
        data_keys=("flip_unfactual_winner",),
        tag_keys=("delta",),
    )
)
register(
    Method(
        "cita",
        CitaConfig,
        cita_loss,
        needs_reference=_cita_needs_reference,
        needs_reference_logits=lambda cfg: (
            cfg.lambda_kl > 0 and cfg.kl_estimator == "token_full_vocab"
        ),
        uses_instruction=lambda cfg: cfg.use_instruction,
        data_keys=("use_instruction",),
    )
)
