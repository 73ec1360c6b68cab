"""The safety subspace: empirical Fisher of the safety loss, its top eigenspace and rank.

With per-sample gradients G (m, n) (spec/alignment_risk.md section 1):

    F = G^T G / m,   G = U S V^T (thin SVD)  =>  lambda_j = s_j^2 / m, v_j = column j of V
    d = min(top_rank, smallest d with sum_{j<=d} lambda_j / sum_{j<=top_rank} lambda_j >= target)
    diag F = mean_i g_i^2;  module score = mean of diag F over a module's parameters

The eigenvectors V (n, d) span the directions the safety behaviour is most sensitive to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment.risk.params import ParamSlice, RiskInputError


@dataclass
class SafetySubspace:
    """Shapes: eigenvalues (d,), eigenvectors (n, d), fisher_diagonal (n,), spectrum (<= top_rank,)
    (the retained eigenvalues before the rank cut), top_weight_* (k,)."""

    slices: list[ParamSlice]
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    fisher_diagonal: torch.Tensor
    spectrum: torch.Tensor
    module_scores: dict[str, float]
    top_weight_indices: torch.Tensor
    top_weight_scores: torch.Tensor
    samples: int
    backend: str

    @property
    def rank(self) -> int:
        return int(self.eigenvalues.numel())


def explained_variance_rank(
    eigenvalues: torch.Tensor, *, top_rank: int = 32, target: float | None = 0.9
) -> int:
    """The smallest d <= top_rank whose share of the top-`top_rank` spectrum reaches `target`.

    `eigenvalues` sorted descending. target None or >= 1 keeps top_rank; <= 0 keeps 1. Negative
    round-off is clipped to 0; an all-zero spectrum keeps top_rank (the package's rule).
    Example: [6, 3, 1, 1] at 0.9 -> cumulative 0.545, 0.818, 0.909 -> d = 3.
    """
    max_rank = min(top_rank, eigenvalues.numel())
    if max_rank <= 0:
        return 0
    if target is None or target >= 1.0:
        return max_rank
    if target <= 0.0:
        return 1
    clipped = eigenvalues[:max_rank].clamp(min=0.0)
    total = float(clipped.sum())
    if total <= 0.0:
        return max_rank
    reached = torch.nonzero(torch.cumsum(clipped, 0) / total >= target)
    return int(reached[0]) + 1 if reached.numel() else max_rank


def thin_svd_subspace(
    G: torch.Tensor, *, top_rank: int = 32, target: float | None = 0.9
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(eigenvalues (d,), eigenvectors (n, d), retained spectrum (min(top_rank, m, n),))."""
    m = G.shape[0]
    _, s, vh = torch.linalg.svd(G, full_matrices=False)
    eigvals = s.square() / float(m)
    d = explained_variance_rank(eigvals, top_rank=top_rank, target=target)
    return eigvals[:d].clone(), vh[:d].T.contiguous(), eigvals[: min(top_rank, eigvals.numel())]


def module_sensitivity(fisher_diagonal: torch.Tensor, slices: list[ParamSlice]) -> dict[str, float]:
    """Mean diag F per module (a parameter's name without its last component)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s in slices:
        module = s.name.rsplit(".", 1)[0]
        sums[module] = sums.get(module, 0.0) + float(fisher_diagonal[s.start : s.end].sum())
        counts[module] = counts.get(module, 0) + s.end - s.start
    return {name: sums[name] / counts[name] for name in sums}


def check_finite(G: torch.Tensor, slices: list[ParamSlice]) -> None:
    bad = ~torch.isfinite(G)
    if not bad.any():
        return
    first = int(torch.nonzero(bad.any(0))[0])
    where = next(s.name for s in slices if s.start <= first < s.end)
    raise RiskInputError(
        f"risk.parameter_names: the empirical Fisher has {int(bad.sum())} non-finite entries "
        f"(first in {where}): the safety loss gives NaN/inf gradients; check model.dtype and "
        "the risk.safety data"
    )


def subspace_from_gradients(
    G: torch.Tensor,
    slices: list[ParamSlice],
    *,
    top_rank: int = 32,
    target_explained_variance: float | None = 0.9,
    top_weight_count: int = 256,
    backend: str = "given",
) -> SafetySubspace:
    """The SafetySubspace of per-sample gradients G (m, n) (fp32; checked finite)."""
    check_finite(G, slices)
    fisher_diagonal = G.square().mean(0)
    eigvals, eigvecs, spectrum = thin_svd_subspace(
        G, top_rank=top_rank, target=target_explained_variance
    )
    scores, indices = torch.topk(fisher_diagonal, k=min(top_weight_count, G.shape[1]))
    return SafetySubspace(
        slices=slices,
        eigenvalues=eigvals,
        eigenvectors=eigvecs,
        fisher_diagonal=fisher_diagonal,
        spectrum=spectrum,
        module_scores=module_sensitivity(fisher_diagonal, slices),
        top_weight_indices=indices,
        top_weight_scores=scores,
        samples=G.shape[0],
        backend=backend,
    )
