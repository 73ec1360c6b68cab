"""LoRA module discovery and the stacked per-rank factor state that GRIT keeps for them.

GRIT batches its r×r algebra across modules: every module of rank r on one device owns a slot in
(M, r, r) stacks (statistics, inverses, projectors), and its A and B weights belong to a shape
group of equal-shape tensors that are stacked for one bmm per group (Llama-3-8B: 224 modules, 4
A-shapes, 4 B-shapes). This module builds those groups; grit.py drives them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

FACTOR_KEYS = (
    "cov_a",
    "cov_g",
    "n_a",
    "n_g",
    "inv_a",
    "inv_g",
    "has_inv",
    "proj_a",
    "proj_g",
    "k",
    "eff_rank_a",
    "eff_rank_g",
)


@dataclass
class LoraModule:
    """One peft LoRA linear layer: y = W0 x + scaling · B A x.

    a: lora_A weight (r, d_in); b: lora_B weight (d_out, r).
    """

    name: str
    layer: nn.Module
    a: nn.Parameter
    b: nn.Parameter
    scaling: float


@dataclass
class ShapeGroup:
    """Equal-shape A (or B) weights of one rank group, preconditioned with one bmm.

    slots: (M_s,) positions of these modules in the rank group's stacks.
    precond: (M_s, r, r) the inverse applied to their gradients (None until the first inversion).
    penalty: (M_s, r, r) the regulariser matrix K (None until built).
    """

    params: list[nn.Parameter]
    slots: torch.Tensor
    precond: torch.Tensor | None = None
    penalty: torch.Tensor | None = None


@dataclass
class RankGroup:
    """Modules of rank r on one device, with their factors stacked along dim 0.

    cov_a/cov_g: Σ_a, Σ_g (M, r, r) fp32. n_a/n_g: tokens counted (M,) float64.
    inv_a/inv_g: cached damped inverses (M, r, r), identity until valid; has_inv (M,) bool.
    proj_a/proj_g: cached projectors V_k V_kᵀ (M, r, r); k (M,) their ranks.
    eff_rank_a/eff_rank_g: entropy effective ranks of Σ_a, Σ_g at the last inversion.
    has_basis: whether proj_a/proj_g hold a Fisher basis yet (host-side flag, no sync).
    """

    r: int
    modules: list[LoraModule]
    a_shapes: list[ShapeGroup]
    b_shapes: list[ShapeGroup]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    has_basis: bool = False

    def __getattr__(self, key: str) -> torch.Tensor:
        # Factor tensors read as attributes (group.cov_a); only reached for missing attributes.
        tensors = self.__dict__.get("tensors", {})
        if key in tensors:
            return tensors[key]
        raise AttributeError(key)

    def reset_statistics(self) -> None:
        """Forget Σ_a, Σ_g and the token counts (reset_stats_on_reproject)."""
        for key in ("cov_a", "cov_g", "n_a", "n_g"):
            self.tensors[key].zero_()


def find_lora_modules(model: nn.Module, adapter: str) -> list[LoraModule]:
    """Every peft LoraLayer with a linear `lora_A[adapter]` of rank > 0, in module order."""
    from peft.tuners.lora import LoraLayer

    found = []
    for name, layer in model.named_modules():
        if not isinstance(layer, LoraLayer) or adapter not in getattr(layer, "lora_A", {}):
            continue
        lora_a, lora_b = layer.lora_A[adapter], layer.lora_B[adapter]
        if not isinstance(lora_a, nn.Linear) or layer.r.get(adapter, 0) <= 0:
            continue
        if adapter in getattr(layer, "lora_variant", {}):
            raise ValueError(f"GRIT supports plain LoRA only; {name} uses a LoRA variant (DoRA?)")
        scaling = float(layer.scaling[adapter])
        found.append(LoraModule(name, layer, lora_a.weight, lora_b.weight, scaling))
    return found


def _shape_groups(params: list[nn.Parameter]) -> list[ShapeGroup]:
    by_shape: dict[tuple, list[int]] = {}
    for slot, p in enumerate(params):
        by_shape.setdefault((tuple(p.shape), p.dtype), []).append(slot)
    device = params[0].device
    return [
        ShapeGroup([params[s] for s in slots], torch.tensor(slots, device=device))
        for slots in by_shape.values()
    ]


def _new_factors(m: int, r: int, device: torch.device) -> dict[str, torch.Tensor]:
    eye = torch.eye(r, device=device).expand(m, r, r)
    zeros = torch.zeros(m, r, r, device=device)
    return {
        "cov_a": zeros.clone(),
        "cov_g": zeros.clone(),
        "n_a": torch.zeros(m, device=device, dtype=torch.float64),
        "n_g": torch.zeros(m, device=device, dtype=torch.float64),
        "inv_a": eye.clone(),
        "inv_g": eye.clone(),
        "has_inv": torch.zeros(m, device=device, dtype=torch.bool),
        "proj_a": eye.clone(),
        "proj_g": eye.clone(),
        "k": torch.full((m,), r, device=device, dtype=torch.long),
        "eff_rank_a": torch.zeros(m, device=device),
        "eff_rank_g": torch.zeros(m, device=device),
    }


def group_modules(modules: list[LoraModule]) -> list[RankGroup]:
    """Split modules into rank groups (same r and device) and allocate their factor stacks."""
    by_rank: dict[tuple[int, torch.device], list[LoraModule]] = {}
    for mod in modules:
        by_rank.setdefault((mod.a.shape[0], mod.a.device), []).append(mod)
    groups = []
    for (r, device), mods in by_rank.items():
        groups.append(
            RankGroup(
                r=r,
                modules=mods,
                a_shapes=_shape_groups([m.a for m in mods]),
                b_shapes=_shape_groups([m.b for m in mods]),
                tensors=_new_factors(len(mods), r, device),
            )
        )
    return groups


def effective_param_counts(group: RankGroup) -> tuple[torch.Tensor, int]:
    """(Σ k·(d_in + d_out), Σ r·(d_in + d_out)): accounting only, no tensor shrinks (section 5)."""
    widths = torch.tensor(
        [m.a.shape[1] + m.b.shape[0] for m in group.modules], device=group.k.device
    )
    return (group.k * widths).sum(), group.r * int(widths.sum())


def gather_grads(group: ShapeGroup) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The group's gradients and the matching rows of its cached inverse.

    Modules without a gradient (unused in this step) are left out; that rare case indexes the
    inverse with a fresh slot tensor instead of the cached one.
    """
    grads = [p.grad for p in group.params]
    if all(g is not None for g in grads):
        return grads, group.precond
    present = [i for i, g in enumerate(grads) if g is not None]
    if not present or group.precond is None:
        return [], None
    rows = torch.tensor(present, device=group.precond.device)
    return [grads[i] for i in present], group.precond[rows]


@torch.no_grad()
def apply_stacked(params: list[nn.Parameter], fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """params ← fn(stack(params)) in fp32, written back in place with one foreach copy."""
    new = fn(torch.stack(params).float())
    torch._foreach_copy_(params, list(new.unbind(0)))
