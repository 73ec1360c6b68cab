"""Schemas of the `method` config group: one dataclass per training method.

Every schema names its method (`name`), which the method registry in `alignment/methods.py` maps
to a loss function. Hyperparameters are only those the loss reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

KL_ESTIMATORS = ("seq_logratio", "seq_sq", "token_full_vocab")


@dataclass
class MethodConfig:
    name: str = MISSING


@dataclass
class BaselineConfig(MethodConfig):
    """No training: the base model is evaluated as it is."""


@dataclass
class SftConfig(MethodConfig):
    """Supervised fine-tuning on the chosen response (masked negative log-likelihood)."""


def _check_beta(beta: float) -> None:
    if beta <= 0:
        raise ValueError(f"method.beta must be > 0, got {beta}")


@dataclass
class DpoConfig(MethodConfig):
    """Sigmoid DPO (Rafailov et al. 2023, eq. 7). beta: 0.01-0.5, typically 0.1."""

    beta: float = 0.1
    label_smoothing: float = 0.0
    reference_free: bool = False

    def __post_init__(self) -> None:
        _check_beta(self.beta)
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"method.label_smoothing must be in [0, 0.5), got {self.label_smoothing}"
            )


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
        _check_beta(self.beta)
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"method.kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}"
            )
        if self.lambda_kl < 0 or self.lambda_sft < 0 or self.log_eps < 0:
            raise ValueError("method.lambda_kl, method.lambda_sft and method.log_eps must be >= 0")


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
        _check_beta(self.beta)
        if self.delta < 0:
            raise ValueError(f"method.delta must be >= 0, got {self.delta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"method.label_smoothing must be in [0, 0.5), got {self.label_smoothing}"
            )
