"""Schema of `optimizer=grit`: rank-space K-FAC natural gradient for LoRA (spec/grit.md).

Defaults reproduce the reference code, runtime overrides included; each override is a flag so an
ablation means what it says. The `grit` preset (conf/optimizer/grit.yaml) sets the seed knobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignment.config.optim import OptimizerConfig

PAIRINGS = ("grit", "kfac_exact")
CLIP_ORDERS = ("clip_then_precondition", "precondition_then_clip")
STATS_MODES = ("cumulative", "ema")
STATS_MASKS = ("none", "attention", "response")
REGULARIZER_BASES = ("reference", "cached")


@dataclass
class GritConfig(OptimizerConfig):
    """GRIT wraps AdamW (`base`): precondition LoRA grads, then the AdamW step.

    precondition: false turns the natural-gradient step off; reproject: false turns the
      Fisher-guided reprojection off. With both off and lambda_kfac = lambda_reproj = 0 the run is
      plain AdamW, bit for bit (statistics are still collected, which changes no numbers).
    max_grad_norm (inherited): GRIT's wrapper clips, in `grad_clip_order` relative to
      preconditioning; the trainer must not clip as well.
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

    name: str = "grit"
    base: str = "adamw"
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
    grad_clip_order: str = "clip_then_precondition"
    ng_warmup_steps: int = 0
    reprojection_freq: int = 50
    reprojection_warmup_steps: int = 20
    reprojection_k: int | None = 8
    two_sided_reprojection: bool = True
    enable_rank_adaptation: bool = False
    rank_tau: float = 0.99
    min_lora_rank: int = 4
    rank_adaptation_start_step: int = 0
    reset_optimizer_state_on_reproject: bool = False
    lambda_kfac: float = 1e-6
    lambda_reproj: float = 1e-5
    regularizer_warmup_steps: int = 0
    regularizer_basis: str = "reference"

    def __post_init__(self) -> None:
        super().__post_init__()
        choices = {
            "pairing": (self.pairing, PAIRINGS),
            "grad_clip_order": (self.grad_clip_order, CLIP_ORDERS),
            "stats_mode": (self.stats_mode, STATS_MODES),
            "stats_mask": (self.stats_mask, STATS_MASKS),
            "regularizer_basis": (self.regularizer_basis, REGULARIZER_BASES),
            "base": (self.base, ("adamw", "adamw_8bit")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"optimizer.{key} must be one of {allowed}, got {value!r}")
        if min(self.kfac_update_freq, self.reprojection_freq, self.cov_update_freq) < 1:
            raise ValueError("optimizer.*_freq values must be >= 1")
        if not 0.0 < self.rank_tau <= 1.0:
            raise ValueError(f"optimizer.rank_tau must be in (0, 1], got {self.rank_tau}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"optimizer.ema_decay must be in [0, 1), got {self.ema_decay}")
        if min(self.lambda_kfac, self.lambda_reproj, self.kfac_damping) < 0:
            raise ValueError("optimizer.lambda_kfac, lambda_reproj and kfac_damping must be >= 0")
        if self.min_lora_rank < 1:
            raise ValueError(f"optimizer.min_lora_rank must be >= 1, got {self.min_lora_rank}")
        if self.reprojection_k is not None and self.reprojection_k < 1:
            raise ValueError(
                f"optimizer.reprojection_k must be >= 1 or null, got {self.reprojection_k}"
            )
