"""Capture of GRIT's rank-space statistics Σ_a = E[u uᵀ], Σ_g = E[v vᵀ] during training.

A forward hook on each LoRA layer counts its training forwards and, on every `freq`-th one
(the reference's per-module throttle, default 15), computes u = x Aᵀ (N×r, small) and hangs a
hook on the layer output. That hook sees g_y = ∂L/∂y in the backward pass, computes v = g_y B
and updates both factors in place. Neither s nor dropout enters u or v (spec section 2). Between
captures the hook returns after one counter increment, so nothing else is kept alive.

With N ranks (DDP) every rank captures on the same call (they run the same number of forwards),
and the per-capture sums and token counts are all-reduced before the factor update, on a process
group of their own (so they never interleave with DDP's gradient buckets). Each rank's loss is
the mean over its own share of the global batch, so its g_y is N times the global loss's: the v
moment is divided by N². N ranks thus give the factors one rank computes on the global batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from alignment import distributed
from alignment.optim.grit_math import rank_space_moment, update_factor
from alignment.optim.grit_modules import RankGroup


def _inside_backward() -> bool:
    # Non-reentrant gradient checkpointing (transformers' default) re-runs forwards inside the
    # backward pass; those recomputations must not count as new calls nor capture again.
    return torch._C._current_graph_task_id() != -1


class StatisticsCapture:
    """Forward/backward hooks that fill a RankGroup's cov_a, cov_g, n_a and n_g.

    Args:
        groups: the rank groups whose modules get hooks.
        adapter: the peft adapter name whose A and B are used.
        freq: capture on every freq-th counted forward of each module.
        mode: "cumulative" or "ema"; decay: the EMA decay.
    """

    def __init__(self, groups: list[RankGroup], adapter: str, freq: int, mode: str, decay: float):
        self.groups = groups
        self.adapter = adapter
        self.freq = freq
        self.mode = mode
        self.decay = decay
        self.token_mask: torch.Tensor | None = None
        self.captures = 0  # host-side count of module captures (diagnostics, no sync)
        self.calls: list[list[int]] = [[0] * len(g.modules) for g in groups]
        self.world = distributed.world_size()
        self._group = torch.distributed.new_group() if self.world > 1 else None
        self._handles = [
            mod.layer.register_forward_hook(self._hook_for(gi, slot), with_kwargs=True)
            for gi, group in enumerate(groups)
            for slot, mod in enumerate(group.modules)
        ]

    def remove(self) -> None:
        """Detach every hook (the preconditioner is being discarded)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, gi: int, slot: int):
        def hook(layer: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            if not (layer.training and torch.is_grad_enabled()) or _inside_backward():
                return
            if layer.disable_adapters or layer.merged:
                return
            if self.adapter not in layer.active_adapters:
                return
            self.calls[gi][slot] += 1
            if self.calls[gi][slot] % self.freq != 0:
                return
            x = args[0] if args else kwargs["x"]
            self._start_capture(gi, slot, x, output)

        return hook

    def _token_weights(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.token_mask is None:
            return None
        if self.token_mask.shape != x.shape[:-1]:
            raise ValueError(
                f"GRIT token mask has shape {tuple(self.token_mask.shape)} but the LoRA input has "
                f"{tuple(x.shape[:-1])} token positions; pass the mask of the batch being run"
            )
        return self.token_mask.reshape(-1).to(torch.float32)

    def _start_capture(self, gi: int, slot: int, x: torch.Tensor, output: torch.Tensor) -> None:
        if not (isinstance(output, torch.Tensor) and output.requires_grad):
            return
        mod = self.groups[gi].modules[slot]
        weight = self._token_weights(x)
        with torch.no_grad():
            flat = x.detach().reshape(-1, x.shape[-1]).to(mod.a.dtype)
            u = (flat @ mod.a.detach().T).float()  # (N, r): the LoRA bottleneck without s

        def on_grad(grad_y: torch.Tensor) -> None:
            with torch.no_grad():
                flat_g = grad_y.detach().reshape(-1, grad_y.shape[-1]).to(mod.b.dtype)
                v = (flat_g @ mod.b.detach()).float()  # (N, r): Bᵀ g_y per token, without s
                self._update(gi, slot, u, v, weight)

        output.register_hook(on_grad)

    def _update(
        self,
        gi: int,
        slot: int,
        u: torch.Tensor,
        v: torch.Tensor,
        weight: torch.Tensor | None,
    ) -> None:
        group = self.groups[gi]
        moments = [rank_space_moment(z, weight) for z in (u, v)]
        if self.world > 1:
            moments = self._over_ranks(moments)
        for (batch_sum, batch_count), cov_key, n_key in zip(
            moments, ("cov_a", "cov_g"), ("n_a", "n_g"), strict=True
        ):
            cov, count = group.tensors[cov_key], group.tensors[n_key]
            new_cov, new_count = update_factor(
                cov[slot], count[slot], batch_sum, batch_count, self.mode, self.decay
            )
            cov[slot].copy_(new_cov)
            count[slot].copy_(new_count)
        self.captures += 1

    def _over_ranks(self, moments: list[tuple]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(Σ_t u uᵀ, N_u), (Σ_t v vᵀ, N_v) summed over ranks, v rescaled to the global loss."""
        (sum_u, n_u), (sum_v, n_v) = moments
        r = sum_u.shape[-1]
        counts = [torch.as_tensor(n, dtype=torch.float64, device=sum_u.device) for n in (n_u, n_v)]
        packed = torch.cat([sum_u.reshape(-1).double(), sum_v.reshape(-1).double()])
        packed = torch.cat([packed, torch.stack(counts)])
        packed = distributed.all_reduce_sum(packed, group=self._group)
        sum_u = packed[: r * r].view(r, r).to(sum_u.dtype)
        sum_v = (packed[r * r : 2 * r * r].view(r, r) / self.world**2).to(sum_v.dtype)
        return [(sum_u, packed[-2]), (sum_v, packed[-1])]

    def state_dict(self) -> dict[str, Any]:
        return {"calls": [list(c) for c in self.calls], "captures": self.captures}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = [list(c) for c in state["calls"]]
        self.captures = int(state["captures"])
