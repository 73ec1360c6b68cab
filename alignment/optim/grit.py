"""GRIT preconditioner: rank-space K-FAC natural gradient for LoRA (spec/grit.md).

`GritPreconditioner` is a plain object, not an Optimizer. It hooks every peft LoRA layer to
collect Σ_a = E[u uᵀ] and Σ_g = E[v vᵀ] (grit_capture.py), inverts them on a schedule, rewrites
the LoRA `.grad`s between backward and the optimizer step, reprojects A and B onto the dominant
Fisher subspace, and supplies the λ_K/λ_R regularisers. The maths lives in grit_math.py; the
optimizer wrapper that calls it in order lives in grit_optimizer.py.

Speed: all r×r algebra is batched per rank group (one cholesky_ex, one eigh per event), the
gradients of equal-shape modules are rewritten with one bmm, inverses stay on the device, and
nothing here reads a device value back per step. Host syncs happen only in `metrics()` and, with
adaptive_freq, once per inversion/reprojection event (to choose the next interval).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from alignment.config.grit import GritHParams
from alignment.optim import grit_math as gm
from alignment.optim.grit_capture import StatisticsCapture
from alignment.optim.grit_modules import (
    FACTOR_KEYS,
    RankGroup,
    apply_stacked,
    find_lora_modules,
    gather_grads,
    group_modules,
)
from alignment.optim.grit_optimizer import GritOptimizer
from alignment.optim.grit_schedule import Diagnostics, ScheduleState, regularizer_scale

if TYPE_CHECKING:
    from alignment.config.grit import GritConfig

logger = logging.getLogger(__name__)


def _active_adapter(model: nn.Module) -> str:
    active = getattr(model, "active_adapter", "default")
    return active[0] if isinstance(active, list) else active


class GritPreconditioner:
    """Statistics, inverses, bases and schedule of GRIT over a peft LoRA model.

    The trainer calls, per micro-batch: `set_token_mask` (before forward), `regularization_loss`
    (added to the loss) and `observe_loss` (the detached task loss). The optimizer wrapper calls
    `precondition` before the inner step and `step_end` after it.
    """

    def __init__(
        self, model: nn.Module, hparams: GritHParams | None = None, adapter: str | None = None
    ):
        self.hp = hp = hparams or GritHParams()
        adapter = adapter or _active_adapter(model)
        modules = find_lora_modules(model, adapter)
        if not modules:
            raise ValueError("GRIT found no peft LoRA linear layers with r > 0 in the model")
        self.groups: list[RankGroup] = group_modules(modules)
        self.capture = StatisticsCapture(
            self.groups, adapter, hp.cov_update_freq, hp.stats_mode, hp.ema_decay
        )
        device = modules[0].a.device
        self.sched = ScheduleState(hp.kfac_update_freq, hp.reprojection_freq, device)
        self._diag = Diagnostics(device, hp.kfac_damping)
        self._penalty_key: tuple | None = None
        logger.info("GRIT: %d LoRA modules in %d rank group(s)", len(modules), len(self.groups))
        self._warn_rank_cut()

    # ----- trainer-facing API --------------------------------------------------------------
    @property
    def stats_mask(self) -> str:
        """Which token mask the trainer should pass: none, attention or response."""
        return self.hp.stats_mask

    def set_token_mask(self, mask: torch.Tensor | None) -> None:
        """(B, L) bool mask of the tokens that count in Σ_a, Σ_g for the next forward."""
        self.capture.token_mask = None if self.hp.stats_mask == "none" else mask

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Record a micro-batch's detached task loss (kept on the device)."""
        self.sched.observe(loss)

    def regularization_loss(self) -> torch.Tensor | None:
        """λ_K Σ tr(AᵀΣ_aA) + tr(BΣ_gBᵀ) + λ_R Σ ‖(I−P_a)A‖² + ‖B(I−P_g)‖², warmed up."""
        hp = self.hp
        if hp.lambda_kfac == 0.0 and hp.lambda_reproj == 0.0:
            return None
        self._refresh_penalties()
        total = None
        for group in self.groups:
            for sg in group.a_shapes:
                term = gm.quadratic_penalty_left(torch.stack(sg.params), sg.penalty)
                total = term if total is None else total + term
            for sg in group.b_shapes:
                total = total + gm.quadratic_penalty_right(torch.stack(sg.params), sg.penalty)
        return regularizer_scale(self.sched.step, hp.regularizer_warmup_steps) * total

    def metrics(self) -> dict[str, float]:
        """Diagnostics since the last call (one host sync)."""
        return self._diag.collect(self.groups, self.sched)

    # ----- optimizer-facing API ------------------------------------------------------------
    def precondition(self) -> None:
        """Rewrite the LoRA .grads with the cached inverses (pairing chooses the sides)."""
        if not (self.hp.precondition and self.sched.factors_ready):
            return
        if self.sched.step < self.hp.ng_warmup_steps:
            return
        norm_sq = torch.zeros((), device=self._diag.device)
        for group in self.groups:
            for side, shapes in (("left", group.a_shapes), ("right", group.b_shapes)):
                for sg in shapes:
                    grads, inverse = gather_grads(sg)
                    if grads:
                        term = _precondition_into(grads, inverse, side)
                        norm_sq = norm_sq + term.to(norm_sq.device)
        self._diag.record_grad_norm(norm_sq.sqrt())

    def step_end(self) -> list[nn.Parameter]:
        """Advance one optimizer step and run the due events; returns the reprojected params."""
        sched, hp = self.sched, self.hp
        sched.flush_loss()
        sched.step += 1
        if sched.step - sched.last_inversion >= sched.kfac_freq:
            self.invert()
            sched.last_inversion = sched.step
            sched.kfac_freq = sched.next_freq(hp.kfac_update_freq, 1000, hp.adaptive_freq)
        due = sched.step - sched.last_reprojection >= sched.reproj_freq
        if hp.reproject and sched.step >= hp.reprojection_warmup_steps and due:
            projected = self.reproject()
            sched.last_reprojection = sched.step
            sched.reproj_freq = sched.next_freq(hp.reprojection_freq, 2000, hp.adaptive_freq)
            return projected
        return []

    # ----- schedule events -----------------------------------------------------------------
    def invert(self) -> None:
        """Damped inversion of every module's factors (spec section 3), batched per rank group."""
        hp = self.hp
        damping = self.sched.damping(hp.kfac_damping, hp.adaptive_damping).clamp_min(gm.MIN_DAMPING)
        for group in self.groups:
            inv_a, inv_g, ok, scale = gm.damped_inverse_pair(group.cov_a, group.cov_g, damping)
            enough = (group.n_a >= hp.kfac_min_samples) & (group.n_g >= hp.kfac_min_samples)
            valid = (ok & enough)[:, None, None]
            group.inv_a.copy_(torch.where(valid, inv_a, group.inv_a))
            group.inv_g.copy_(torch.where(valid, inv_g, group.inv_g))
            group.has_inv.logical_or_(valid.view(-1))
            evals_a, evecs_a = gm.sorted_eigh(group.cov_a)
            evals_g, evecs_g = gm.sorted_eigh(group.cov_g)
            group.eff_rank_a.copy_(gm.effective_rank(evals_a))
            group.eff_rank_g.copy_(gm.effective_rank(evals_g))
            if hp.regularizer_basis == "cached":
                proj_a, proj_g, _ = self._bases(group, evecs_a, evals_a, evecs_g, tau_always=False)
                group.proj_a.copy_(torch.where(enough[:, None, None], proj_a, group.proj_a))
                group.proj_g.copy_(torch.where(enough[:, None, None], proj_g, group.proj_g))
                group.has_basis = True
            self._diag.record_inversion(damping, enough & ~ok, scale, ok & enough)
        self.sched.factors_ready = True
        self.sched.inversions += 1
        self.cache_inverses()

    def reproject(self) -> list[nn.Parameter]:
        """A ← P_a A, B ← B P_g onto the top-k Fisher eigenvectors (spec section 5)."""
        hp, projected = self.hp, []
        for group in self.groups:
            evals_a, evecs_a = gm.sorted_eigh(group.cov_a)
            _, evecs_g = gm.sorted_eigh(group.cov_g)
            proj_a, proj_g, k = self._bases(group, evecs_a, evals_a, evecs_g, tau_always=False)
            finite = torch.isfinite(group.cov_a).flatten(1).all(-1)
            valid = finite & (group.n_a >= hp.kfac_min_samples)
            eye = torch.eye(group.r, device=proj_a.device)
            group.proj_a.copy_(torch.where(valid[:, None, None], proj_a, eye))
            group.proj_g.copy_(torch.where(valid[:, None, None], proj_g, eye))
            group.k.copy_(torch.where(valid, k, torch.full_like(k, group.r)))
            group.has_basis = True
            for sg in group.a_shapes:
                apply_stacked(sg.params, lambda w, p=group.proj_a[sg.slots]: torch.bmm(p, w))
            for sg in group.b_shapes:
                apply_stacked(sg.params, lambda w, p=group.proj_g[sg.slots]: torch.bmm(w, p))
            projected += [m.a for m in group.modules] + [m.b for m in group.modules]
            if hp.reset_stats_on_reproject:
                group.reset_statistics()
        self.sched.reprojections += 1
        return projected

    def cache_inverses(self) -> None:
        """Gather each shape group's inverses once per inversion (not per step)."""
        grit_pairing = self.hp.pairing == "grit"
        for group in self.groups:
            left = group.inv_a if grit_pairing else group.inv_g  # applied to A's gradient
            right = group.inv_g if grit_pairing else group.inv_a  # applied to B's gradient
            for sg in group.a_shapes:
                sg.precond = left[sg.slots]
            for sg in group.b_shapes:
                sg.precond = right[sg.slots]

    def _bases(
        self,
        group: RankGroup,
        evecs_a: torch.Tensor,
        evals_a: torch.Tensor,
        evecs_g: torch.Tensor,
        tau_always: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projectors P_a, P_g and ranks k with the reprojection rule (tau or fixed k)."""
        hp, r = self.hp, group.r
        started = self.sched.step >= hp.rank_adaptation_start_step
        use_tau = started and (tau_always or (hp.enable_rank_adaptation and r > hp.min_lora_rank))
        if use_tau:
            k = gm.tau_rank(evals_a, hp.rank_tau, hp.min_lora_rank)
        else:
            fixed_k = min(hp.reprojection_k or r, r)
            k = torch.full((len(group.modules),), fixed_k, device=evecs_a.device)
        proj_a = gm.projector(evecs_a, k)
        proj_g = proj_a
        if hp.two_sided_reprojection:
            sampled = (group.n_g >= hp.kfac_min_samples)[:, None, None]
            proj_g = torch.where(sampled, gm.projector(evecs_g, k), proj_a)
        return proj_a, proj_g, k

    def _refresh_penalties(self) -> None:
        # K = λ_K Σ + λ_R (I − P) changes only when Σ or a basis does (or when the reference
        # rule switches to the tau rank at rank_adaptation_start_step), so most calls reuse it.
        started = self.sched.step >= self.hp.rank_adaptation_start_step
        key = (self.capture.captures, started, self.sched.inversions, self.sched.reprojections)
        if key == self._penalty_key:
            return
        self._penalty_key = key
        hp = self.hp
        for group in self.groups:
            if group.has_basis:
                proj_a, proj_g = group.proj_a, group.proj_g
            elif hp.regularizer_basis == "reference":
                proj_a, proj_g = self._reference_bases(group)
            else:  # cached, before the first inversion: no basis, so no λ_R term yet
                proj_a = proj_g = None
            k_a = gm.penalty_matrix(group.cov_a, proj_a, hp.lambda_kfac, hp.lambda_reproj)
            k_g = gm.penalty_matrix(group.cov_g, proj_g, hp.lambda_kfac, hp.lambda_reproj)
            for sg in group.a_shapes:
                sg.penalty = k_a[sg.slots]
            for sg in group.b_shapes:
                sg.penalty = k_g[sg.slots]

    def _reference_bases(self, group: RankGroup) -> tuple[torch.Tensor, torch.Tensor]:
        # The reference's per-step eigh before any basis is cached, with the tau rule as soon as
        # step >= rank_adaptation_start_step even when rank adaptation is off (spec section 6).
        evals_a, evecs_a = gm.sorted_eigh(group.cov_a)
        _, evecs_g = gm.sorted_eigh(group.cov_g)
        proj_a, proj_g, _ = self._bases(group, evecs_a, evals_a, evecs_g, tau_always=True)
        return proj_a, proj_g

    def _warn_rank_cut(self) -> None:
        hp = self.hp
        if not hp.reproject or hp.reprojection_k is None:
            return
        for group in self.groups:
            adaptive = hp.enable_rank_adaptation and group.r > hp.min_lora_rank
            if hp.reprojection_k < group.r and not adaptive:
                logger.warning(
                    "GRIT: reprojection will cut rank r=%d to k=%d (reprojection_k < r with rank "
                    "adaptation off); set optimizer.reprojection_k=null to keep r",
                    group.r,
                    hp.reprojection_k,
                )

    # ----- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Statistics, inverses, bases, counters and loss history (tensors and plain values)."""
        return {
            "schedule": self.sched.state_dict(),
            "capture": self.capture.state_dict(),
            "groups": [
                {
                    "names": [m.name for m in g.modules],
                    "has_basis": g.has_basis,
                    **{key: g.tensors[key] for key in FACTOR_KEYS},
                }
                for g in self.groups
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output into this (identically structured) model's state."""
        if len(state["groups"]) != len(self.groups):
            raise ValueError("GRIT state has a different number of rank groups than the model")
        for group, saved in zip(self.groups, state["groups"], strict=True):
            if list(saved["names"]) != [m.name for m in group.modules]:
                raise ValueError("GRIT state was saved for different LoRA modules")
            for key in FACTOR_KEYS:
                group.tensors[key].copy_(saved[key])
            group.has_basis = bool(saved["has_basis"])
        self.sched.load_state_dict(state["schedule"])
        self.capture.load_state_dict(state["capture"])
        self._penalty_key = None
        self.cache_inverses()

    def remove(self) -> None:
        """Detach the statistics hooks."""
        self.capture.remove()


def _precondition_into(grads: list[torch.Tensor], inverse: torch.Tensor, side: str) -> torch.Tensor:
    """Precondition, sanitise and write back equal-shape grads; returns their squared norm."""
    stacked = torch.stack(grads)
    if side == "left":
        out = gm.sanitize(gm.precondition_left(inverse, stacked))
    else:
        out = gm.sanitize(gm.precondition_right(stacked, inverse))
    torch._foreach_copy_(grads, list(out.unbind(0)))
    return out.square().sum()


def build_grit(
    cfg: GritConfig, model: nn.Module, inner: torch.optim.Optimizer
) -> tuple[GritOptimizer, GritPreconditioner]:
    """The GRIT optimizer wrapper around `inner` and the preconditioner the trainer talks to.

    The wrapper clips to cfg.max_grad_norm itself, so the trainer must disable its own clipping.
    """
    preconditioner = GritPreconditioner(model, cfg)  # a GritConfig is a GritHParams
    optimizer = GritOptimizer(
        inner,
        preconditioner,
        max_grad_norm=cfg.max_grad_norm,
        grad_clip_order=cfg.grad_clip_order,
        reset_optimizer_state_on_reproject=cfg.reset_optimizer_state_on_reproject,
    )
    return optimizer, preconditioner
