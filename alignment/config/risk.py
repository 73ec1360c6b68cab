"""Schemas of the `risk` group (the Fisher preflight, spec/alignment_risk.md) and the base of the
`regularizer` group (its options' schemas register with alignment.risk.regularizers).

Defaults reproduce the PyPI package alignment-risk 1.14.1, except two run-level choices:
learning_rate null means the run's own optimizer.lr, and the forecast horizon is stretched to
cover the run's planned steps when those exceed max_steps (so the gate sees the whole run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from alignment.config.checks import check, check_choice
from alignment.config.data import DatasetConfig

RISK_OPTIONS = ("none", "preflight")
GATES = ("off", "warn", "skip")
GRADIENT_BACKENDS = ("auto", "vmap", "loop")


def _safety_default() -> DatasetConfig:
    return DatasetConfig(name="safety_prefs", max_length=128, val_fraction=0.0)


@dataclass
class RiskConfig:
    """The preflight run before training (`risk=preflight`; `risk=none` skips it).

    gate: off (report only) | warn | skip. With warn or skip the preflight runs whatever `name`
      says; a forecast collapse step within the run's planned steps logs a warning (warn) or ends
      the run before training, tagged risk_gate=skipped (skip). regularizer=alignguard also runs
      it (its subspace is the preflight's).
    parameter_names: glob patterns over parameter names; `layers.-1.` is the last layer (-2 the
      one before, as Python counts). The
      per-sample gradients are max_samples x n floats, so n is capped by max_parameters: name a
      few LoRA modules for real LLMs (the default: the last layer's attention LoRA factors).
    safety: the preference data of the safety loss (DPO with beta=safety_beta); any dataset
      option's keys work here (risk.safety.name=hh_rlhf risk.safety.data_dir=harmless-base).
    backend: per-sample gradients by torch.func vmap, a loop, or auto (vmap if it matches).
    learning_rate: eta of the forecast (null: optimizer.lr). Remaining keys: spec sections 1-4.
    cache: reuse the safety subspace of an identical earlier preflight (<cache_dir>/risk/).
    """

    name: str = "none"
    gate: str = "off"
    parameter_names: list[str] = field(default_factory=lambda: ["*.layers.-1.self_attn.*lora_*"])
    max_parameters: int = 500_000
    max_samples: int = 128
    safety: DatasetConfig = field(default_factory=_safety_default)
    safety_beta: float = 0.1
    safety_batch_size: int = 8
    backend: str = "auto"
    top_rank: int = 32
    target_explained_variance: float = 0.9
    top_weight_count: int = 256
    learning_rate: float | None = None
    orthogonality_threshold: float = 0.05
    curvature_batches: int = 1
    refine: bool = True
    refine_batches: int = 4
    refine_fraction: float = 0.5
    max_steps: int = 2000
    collapse_loss_threshold: float = 0.1
    trust_region_warning_ratio: float = 5.0
    cache: bool = True

    def __post_init__(self) -> None:
        check_choice("risk.name", self.name, RISK_OPTIONS)
        check_choice("risk.gate", self.gate, GATES)
        check_choice("risk.backend", self.backend, GRADIENT_BACKENDS)
        counts = ("max_parameters", "max_samples", "safety_batch_size", "top_rank")
        for key in (*counts, "top_weight_count", "curvature_batches", "refine_batches"):
            check(f"risk.{key}", getattr(self, key), ge=1)
        check("risk.max_steps", self.max_steps, ge=0)
        check("risk.target_explained_variance", self.target_explained_variance, gt=0, le=1)
        check("risk.refine_fraction", self.refine_fraction, gt=0, le=1)
        check("risk.orthogonality_threshold", self.orthogonality_threshold, ge=0, le=1)
        check("risk.safety_beta", self.safety_beta, gt=0)
        check("risk.learning_rate", self.learning_rate, gt=0)
        check("risk.collapse_loss_threshold", self.collapse_loss_threshold, ge=0)
        check("risk.trust_region_warning_ratio", self.trust_region_warning_ratio, gt=0)
        if not self.parameter_names:
            raise ValueError("risk.parameter_names must name at least one pattern")

    @property
    def runs(self) -> bool:
        """Whether the preflight runs for this option and gate (the regulariser aside)."""
        return self.name == "preflight" or self.gate != "off"


@dataclass
class RegularizerConfig:
    """An extra training-loss term; each option's schema subclasses this (alignment/risk/
    regularizers.py). `regularizer=none` (the default) leaves the field null."""

    name: str = MISSING
