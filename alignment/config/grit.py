"""Schema of `optimizer=grit`: rank-space K-FAC natural gradient for LoRA (spec/grit.md).

GRIT's algorithm knobs are defined once, in `GritHParams`: the preconditioner takes it (plain
typed values, no config machinery), and `GritConfig` is the base optimizer's schema plus those
knobs plus the wrapper's own settings (the base optimizer, clip order, moment reset). Defaults
reproduce the reference code, runtime overrides included; each override is a flag so an ablation
means what it says. The `grit` preset (conf/optimizer/grit.yaml) sets the seed knobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alignment.config.checks import check, check_choice
from alignment.config.optim import OptimizerConfig

PAIRINGS = ("grit", "kfac_exact")
CLIP_ORDERS = ("clip_then_precondition", "precondition_then_clip")
STATS_MODES = ("cumulative", "ema")
STATS_MASKS = ("none", "attention", "response")
REGULARIZER_BASES = ("reference", "cached")


@dataclass
class GritHParams:
    """GRIT's algorithm knobs, the preconditioner's arguments.

    precondition: false turns the natural-gradient step off; reproject: false turns the
      Fisher-guided reprojection off. With both off and lambda_kfac = lambda_reproj = 0 the run is
      plain AdamW, bit for bit (statistics are still collected, which changes no numbers).
    cov_update_freq: a module updates its rank-space statistics every n-th training forward that
      reaches it (reference: every n-th backward; the same thing when each forward is followed
      by a backward).
    stats_mode: cumulative = token-weighted mean over the whole run (reference), ema = decayed by
      ema_decay per update. stats_mask: which tokens count in Σ_a, Σ_g: none (reference: every
      position, padding and prompt included), attention (no padding), response (no prompt).
    kfac_min_samples: token-count gate for inversion/reprojection (a no-op for LLM batches, where
      one update already counts thousands of tokens; kept for parity).
    adaptive_damping: reference override; after 10 losses the damping becomes
      clip(1e-3 + std(last 20 losses), 1e-6, 1e-2), so kfac_damping matters only early on.
      The damping used and the escalation factor are logged (grit/damping, grit/damping_scale).
    adaptive_freq: reference rule; frequencies become 1.5x/0.75x base depending on loss progress
      (the last 20 optimizer-step losses). Evaluated at each event to set the next interval (the
      reference re-evaluates it every step, which would cost a host sync per step).
    pairing: grit = Sigma_g on B and Sigma_a on A (paper/code); kfac_exact = the textbook pairing.
    reprojection_k: 8 (reference) cuts rank 16 to 8 whenever rank adaptation is off; null = r
      (then reprojection is the identity and the lambda_reproj term is zero).
    regularizer_basis: reference = per-step eigh until a basis is cached; cached = bases built at
      inversion time (no per-step eigh).
    """

    precondition: bool = True
    reproject: bool = True
    kfac_update_freq: int = 10
    kfac_damping: float = 1e-5
    kfac_min_samples: int = 16
    cov_update_freq: int = 15
    stats_mode: str = "cumulative"
    ema_decay: float = 0.95
    stats_mask: str = "none"
    reset_stats_on_reproject: bool = False
    adaptive_damping: bool = True
    adaptive_freq: bool = True
    pairing: str = "grit"
    ng_warmup_steps: int = 0
    reprojection_freq: int = 50
    reprojection_warmup_steps: int = 20
    reprojection_k: int | None = 8
    two_sided_reprojection: bool = True
    enable_rank_adaptation: bool = False
    rank_tau: float = 0.99
    min_lora_rank: int = 4
    rank_adaptation_start_step: int = 0
    lambda_kfac: float = 1e-6
    lambda_reproj: float = 1e-5
    regularizer_warmup_steps: int = 0
    regularizer_basis: str = "reference"

    def __post_init__(self) -> None:
        for key, allowed in (
            ("pairing", PAIRINGS),
            ("stats_mode", STATS_MODES),
            ("stats_mask", STATS_MASKS),
            ("regularizer_basis", REGULARIZER_BASES),
        ):
            check_choice(f"optimizer.{key}", getattr(self, key), allowed)
        for key in ("kfac_update_freq", "reprojection_freq", "cov_update_freq", "min_lora_rank"):
            check(f"optimizer.{key}", getattr(self, key), ge=1)
        for key in (
            "kfac_min_samples",
            "ng_warmup_steps",
            "reprojection_warmup_steps",
            "rank_adaptation_start_step",
            "regularizer_warmup_steps",
            "lambda_kfac",
            "lambda_reproj",
            "kfac_damping",
        ):
            check(f"optimizer.{key}", getattr(self, key), ge=0)
        check("optimizer.rank_tau", self.rank_tau, gt=0, le=1)
        check("optimizer.ema_decay", self.ema_decay, ge=0, lt=1)
        check("optimizer.reprojection_k", self.reprojection_k, ge=1)


@dataclass
class GritConfig(OptimizerConfig, GritHParams):
    """GRIT wraps AdamW (`base`): precondition LoRA grads, then the AdamW step.

    max_grad_norm (inherited): GRIT's wrapper clips, in `grad_clip_order` relative to
      preconditioning; the trainer must not clip as well (the optimizer registry says so).
    reset_optimizer_state_on_reproject: zero AdamW's moments of the reprojected tensors.
    """

    # GRIT's r x r algebra needs each LoRA factor whole on every rank, not an FSDP shard.
    shards_with_fsdp: ClassVar[bool] = False

    name: str = "grit"
    base: str = "adamw"
    grad_clip_order: str = "clip_then_precondition"
    reset_optimizer_state_on_reproject: bool = False

    def __post_init__(self) -> None:
        OptimizerConfig.__post_init__(self)
        GritHParams.__post_init__(self)
        check_choice("optimizer.base", self.base, ("adamw", "adamw_8bit"))
        check_choice("optimizer.grad_clip_order", self.grad_clip_order, CLIP_ORDERS)
