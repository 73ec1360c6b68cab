"""The DPO family beyond sigmoid DPO: IPO, hinge (SLiC), robust DPO, SimPO, ORPO and
length-normalised DPO. One schema and one entry each; the maths is in alignment/losses/dpo_family.py
(each loss's docstring: the equation, the paper, and a hand-derived example), and each loss that
TRL 1.16 also has is checked against TRL's own computation in tests/losses/test_dpo_family.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignment.config.checks import check
from alignment.config.method import MethodConfig
from alignment.losses.dpo_family import (
    hinge_loss,
    ipo_loss,
    orpo_loss,
    robust_loss,
    sigmoid_norm_loss,
    simpo_loss,
)
from alignment.methods.registry import Method, always, register


@dataclass
class BetaConfig(MethodConfig):
    """beta: the method's temperature (its meaning per loss is in the loss's docstring)."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        check("method.beta", self.beta, gt=0)


@dataclass
class IpoConfig(BetaConfig):
    """IPO (Azar et al. 2023): beta is the regulariser tau; the target margin is 1/(2 beta)."""


@dataclass
class HingeConfig(BetaConfig):
    """Hinge / SLiC-HF (Zhao et al. 2023) on the DPO margin: 1/beta is the margin."""


@dataclass
class RobustConfig(BetaConfig):
    """Robust DPO (Chowdhury et al. 2024): label_smoothing is the assumed label-flip rate."""

    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check("method.label_smoothing", self.label_smoothing, ge=0, lt=0.5)


@dataclass
class SimpoConfig(MethodConfig):
    """SimPO (Meng et al. 2024): reference-free, length-normalised reward, target margin gamma."""

    beta: float = 2.0
    gamma: float = 1.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        check("method.beta", self.beta, gt=0)
        check("method.gamma", self.gamma, ge=0)
        check("method.label_smoothing", self.label_smoothing, ge=0, lt=0.5)


@dataclass
class OrpoConfig(MethodConfig):
    """ORPO (Hong et al. 2024): SFT plus beta (the paper's lambda) times the odds-ratio term."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        check("method.beta", self.beta, ge=0)


@dataclass
class SigmoidNormConfig(BetaConfig):
    """Length-normalised DPO (Tulu 3): DPO on per-token log-ratios."""

    beta: float = 5.0


register(Method("ipo", IpoConfig, ipo_loss, needs_reference=always))
register(Method("hinge", HingeConfig, hinge_loss, needs_reference=always))
register(Method("robust", RobustConfig, robust_loss, needs_reference=always))
register(Method("simpo", SimpoConfig, simpo_loss))
register(Method("orpo", OrpoConfig, orpo_loss))
register(Method("sigmoid_norm", SigmoidNormConfig, sigmoid_norm_loss, needs_reference=always))
