"""GRIT's schedule state (step counters, event frequencies, loss history) and its diagnostics.

The loss history is a device ring buffer of per-optimizer-step mean task losses, fed directly by
the trainer rather than read from the logging history (the reference's rules therefore depend on
`logging_steps`; here they do not). Adaptive damping is computed on the device at inversion time.
Adaptive frequencies need a Python int, so the rule is evaluated once per event, when it sets the
interval to the next event; the reference re-evaluates it every step, which would cost a host
sync per step. The two differ only when the loss trend flips inside one interval.
"""

from __future__ import annotations

from typing import Any

import torch

from alignment import distributed
from alignment.optim import grit_math as gm
from alignment.optim.grit_modules import RankGroup, effective_param_counts

LOSS_WINDOW = 20  # the reference keeps the last 20 losses for both adaptive rules
DAMPING_MIN_LOSSES = 10  # the damping override starts once more than 10 losses are known


def regularizer_scale(step: int, warmup_steps: int) -> float:
    """Linear warm-up factor of λ_K and λ_R: min(1, step / warmup_steps); 1 without warm-up."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


class ScheduleState:
    """Global step, last event steps, current frequencies and the loss ring buffer."""

    def __init__(self, kfac_freq: int, reproj_freq: int, device: torch.device):
        self.step = 0
        self.last_inversion = 0
        self.last_reprojection = 0
        self.kfac_freq = kfac_freq
        self.reproj_freq = reproj_freq
        self.factors_ready = False
        self.inversions = 0
        self.reprojections = 0
        self.losses = torch.zeros(LOSS_WINDOW, device=device)
        self.loss_count = 0
        self._loss_sum = torch.zeros((), device=device)
        self._loss_micro = 0

    def observe(self, loss: torch.Tensor) -> None:
        self._loss_sum.add_(loss.detach().to(self._loss_sum.device, torch.float32))
        self._loss_micro += 1

    def flush_loss(self) -> None:
        """Push the mean micro-batch loss of the finished optimizer step into the ring buffer."""
        if self._loss_micro == 0:
            return
        mean = self._loss_sum / self._loss_micro
        if distributed.is_distributed():  # the global batch's loss, so every rank adapts alike
            mean = distributed.all_reduce_sum(mean) / distributed.world_size()
        self.losses[self.loss_count % LOSS_WINDOW] = mean
        self.loss_count += 1
        self._loss_sum.zero_()
        self._loss_micro = 0

    def ordered_losses(self) -> torch.Tensor:
        """The last min(count, 20) step losses, oldest first."""
        if self.loss_count <= LOSS_WINDOW:
            return self.losses[: self.loss_count]
        return torch.roll(self.losses, -(self.loss_count % LOSS_WINDOW))

    def damping(self, base: float, adaptive: bool) -> torch.Tensor:
        """kfac_damping, or the reference override clip(1e-3 + std, 1e-6, 1e-2) (0-d tensor)."""
        if adaptive and self.loss_count > DAMPING_MIN_LOSSES:
            return gm.adaptive_damping(self.ordered_losses())
        return torch.tensor(base, device=self.losses.device)

    def next_freq(self, base: int, max_freq: int, adaptive: bool) -> int:
        """Interval to the next event; one host sync when the adaptive rule applies."""
        if not adaptive or self.loss_count < LOSS_WINDOW:
            return base
        improving = bool(gm.loss_improving(self.ordered_losses()).item())
        return gm.adapted_frequency(base, improving, max_freq)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "last_inversion": self.last_inversion,
            "last_reprojection": self.last_reprojection,
            "kfac_freq": self.kfac_freq,
            "reproj_freq": self.reproj_freq,
            "factors_ready": self.factors_ready,
            "inversions": self.inversions,
            "reprojections": self.reprojections,
            "losses": self.losses,
            "loss_count": self.loss_count,
            "loss_sum": self._loss_sum,
            "loss_micro": self._loss_micro,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in (
            "step",
            "last_inversion",
            "last_reprojection",
            "kfac_freq",
            "reproj_freq",
            "inversions",
            "reprojections",
            "loss_count",
        ):
            setattr(self, key, int(state[key]))
        self.factors_ready = bool(state["factors_ready"])
        self.losses.copy_(state["losses"])
        self._loss_sum.copy_(state["loss_sum"])
        self._loss_micro = int(state["loss_micro"])


class Diagnostics:
    """Device-side accumulators of GRIT's logged values; `collect` reads them in one sync."""

    def __init__(self, device: torch.device, damping: float):
        self.device = device
        self.damping = torch.tensor(damping, device=device)
        self.damping_scale = torch.ones((), device=device)
        self._zero()

    def _zero(self) -> None:
        self.grad_norm_sum = torch.zeros((), device=self.device)
        self.grad_norm_steps = 0
        self.failures = torch.zeros((), device=self.device, dtype=torch.long)

    def record_grad_norm(self, norm: torch.Tensor) -> None:
        self.grad_norm_sum += norm
        self.grad_norm_steps += 1

    def record_inversion(
        self, damping: torch.Tensor, failed: torch.Tensor, scale: torch.Tensor, used: torch.Tensor
    ) -> None:
        """failed/used: (M,) bool over all modules; scale: (M,) escalation factor c per module.

        Masks are reduced with `where`, not boolean indexing, which would sync with the host.
        """
        self.damping = damping
        self.failures += failed.sum().to(self.device)
        used_scales = torch.where(used, scale, torch.zeros_like(scale)).sum()
        mean_scale = (used_scales / used.sum().clamp_min(1)).to(self.device)
        self.damping_scale = torch.where(used.any().to(self.device), mean_scale, self.damping_scale)

    def collect(self, groups: list[RankGroup], sched: ScheduleState) -> dict[str, float]:
        eff_a = torch.cat([g.eff_rank_a for g in groups])
        eff_g = torch.cat([g.eff_rank_g for g in groups])
        ks = torch.cat([g.k for g in groups]).float()
        counts = [effective_param_counts(g) for g in groups]
        effective = torch.stack([c[0] for c in counts]).sum().float()
        full = sum(c[1] for c in counts)
        values = {
            "grit/reprojection_k_mean": ks.mean(),
            "grit/reprojection_k_min": ks.min(),
            "grit/reprojection_k_max": ks.max(),
            "grit/effective_param_ratio": effective / full,
            "grit/inversion_failures": self.failures.float(),
            "grit/damping": self.damping.float(),
            "grit/damping_scale": self.damping_scale,
        }
        if sched.inversions:
            values |= {
                "grit/effective_rank_mean": eff_a.mean(),
                "grit/effective_rank_min": eff_a.min(),
                "grit/effective_rank_max": eff_a.max(),
                "grit/effective_rank_g_mean": eff_g.mean(),
            }
        if self.grad_norm_steps:
            values["grit/precond_grad_norm"] = self.grad_norm_sum / self.grad_norm_steps
        names = list(values)
        read = torch.stack([values[n].float() for n in names]).tolist()  # the one host sync
        out = dict(zip(names, read, strict=True))
        out |= {
            "grit/kfac_update_freq": float(sched.kfac_freq),
            "grit/reprojection_freq": float(sched.reproj_freq),
            "grit/inversions": float(sched.inversions),
            "grit/reprojections": float(sched.reprojections),
        }
        self._zero()
        return out
