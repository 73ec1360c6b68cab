"""Pure tensor maths of GRIT (spec/grit.md): rank-space factors, their damped inversion,
natural-gradient preconditioning, Fisher-guided projection, the tau rank rule and the regularisers.

Every function takes stacks of r×r factors, shape (M, r, r) for M LoRA modules of one rank, so
one call (one batched Cholesky, one batched eigh, one bmm) covers every module of a model. No
function here reads a tensor back to the host: results stay on the factors' device.

Notation (spec section 1): a LoRA layer computes y = W0 x + s·B A x with A (r, d_in) and
B (d_out, r); u = x Aᵀ and v = g_y B are the rank-space activations and output gradients, and
Σ_a = E[u uᵀ], Σ_g = E[v vᵀ].
"""

from __future__ import annotations

import math

import torch

# Damping escalation factors tried in order (spec section 3).
ESCALATION: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
# The reference never damps below this, whatever kfac_damping says.
MIN_DAMPING = 1e-6
# Preconditioned gradients are clamped to this magnitude (reference behaviour).
GRAD_CLAMP = 1e6


def rank_space_moment(
    z: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Weighted second moment of rank-space rows: (zᵀ diag(w) z, Σ w).

    Args:
        z: (N, r) rank-space activations u or output gradients v, fp32.
        weight: (N,) token weights in {0, 1} (the token mask), or None for all tokens.

    Returns:
        The (r, r) sum of outer products and the token count: a float without a mask (known on
        the host, so no host-to-device copy), a 0-d float64 tensor with one.
    """
    if weight is None:
        return z.T @ z, float(z.shape[0])
    return (z * weight[:, None]).T @ z, weight.sum(dtype=torch.float64)


def update_factor(
    cov: torch.Tensor,
    count: torch.Tensor,
    batch_sum: torch.Tensor,
    batch_count: torch.Tensor | float,
    mode: str,
    decay: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One running-statistics update of a factor Σ (spec section 2).

    cumulative (reference): Σ ← (n·Σ + Σ_t z zᵀ) / (n + N), a token-weighted mean over the run.
    ema: Σ ← decay·Σ + (1 − decay)·Σ_t z zᵀ / N, seeded with the first batch's mean.
    A batch with no counted tokens (N = 0) leaves Σ unchanged.

    Args:
        cov: (r, r) current factor; count: () tokens seen so far (float64).
        batch_sum: (r, r) from `rank_space_moment`; batch_count: () its token count N.

    Returns:
        The new factor (fp32) and the new token count.
    """
    total = count + batch_count
    if mode == "cumulative":
        mixed = (count * cov + batch_sum) / total.clamp_min(1e-12)
    elif mode == "ema":
        batch_mean = batch_sum / _clamp_count(batch_count)
        mixed = torch.where(count > 0, decay * cov + (1.0 - decay) * batch_mean, batch_mean)
    else:
        raise ValueError(f"stats_mode must be cumulative or ema, got {mode!r}")
    mixed = mixed.to(cov.dtype)
    if isinstance(batch_count, float):
        return (mixed if batch_count > 0 else cov), total
    return torch.where(batch_count > 0, mixed, cov), total


def _clamp_count(count: torch.Tensor | float) -> torch.Tensor | float:
    return max(count, 1e-12) if isinstance(count, float) else count.clamp_min(1e-12)


def symmetrize(mats: torch.Tensor) -> torch.Tensor:
    """½(S + Sᵀ) over the last two dimensions."""
    return 0.5 * (mats + mats.mT)


def damped_inverse_pair(
    cov_a: torch.Tensor,
    cov_g: torch.Tensor,
    damping: torch.Tensor | float,
    scales: tuple[float, ...] = ESCALATION,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Damped Cholesky inverses of both factors of M modules, with escalation (spec section 3).

    For each module the first c in `scales` for which both Σ_a + δcI and Σ_g + δcI factorise is
    used. All escalations are factorised in one batched `cholesky_ex` (6·2·M tiny matrices is
    cheaper than a host round trip per module), so nothing is read back to the host.

    Args:
        cov_a, cov_g: (M, r, r) factors. damping: δ, a float or a 0-d tensor (not floored here).

    Returns:
        inv_a, inv_g: (M, r, r) inverses, the identity where no scale worked.
        ok: (M,) bool, True where some scale worked and the factors were finite.
        scale: (M,) the factor c used (nan where none worked).
    """
    m, r = cov_a.shape[0], cov_a.shape[-1]
    factors = symmetrize(torch.stack([cov_a, cov_g]).float())  # (2, M, r, r)
    finite = torch.isfinite(factors).flatten(2).all(-1).all(0)  # (M,)
    factors = torch.nan_to_num(factors, nan=0.0, posinf=0.0, neginf=0.0)
    c = torch.tensor(scales, device=factors.device, dtype=factors.dtype)  # (C,)
    eye = torch.eye(r, device=factors.device, dtype=factors.dtype)
    shifts = torch.as_tensor(damping, dtype=factors.dtype, device=factors.device) * c
    damped = factors.unsqueeze(0) + shifts.view(-1, 1, 1, 1, 1) * eye  # (C, 2, M, r, r)
    chol, info = torch.linalg.cholesky_ex(damped)
    ok_per_scale = (info == 0).all(dim=1)  # (C, M): both factors factorised
    ok = ok_per_scale.any(0) & finite
    first = ok_per_scale.to(torch.uint8).argmax(0)  # first scale that worked, 0 if none
    chosen = chol[first, :, torch.arange(m, device=factors.device)]  # (M, 2, r, r)
    inverses = torch.cholesky_inverse(chosen)
    inverses = torch.where(ok.view(-1, 1, 1, 1) & torch.isfinite(inverses), inverses, eye)
    scale = torch.where(ok, c[first], torch.full_like(c[first], math.nan))
    return inverses[:, 0], inverses[:, 1], ok, scale


def precondition_left(inverse: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Σ⁻¹ @ gA for A-side gradients: (M, r, r) @ (M, r, d_in), in fp32."""
    return torch.bmm(inverse, grads.float())


def precondition_right(grads: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """gB @ Σ⁻¹ for B-side gradients: (M, d_out, r) @ (M, r, r), in fp32."""
    return torch.bmm(grads.float(), inverse)


def sanitize(grads: torch.Tensor) -> torch.Tensor:
    """NaN/Inf → 0 and clamp to ±1e6, as the reference does before writing .grad back."""
    return torch.nan_to_num(grads, nan=0.0, posinf=0.0, neginf=0.0).clamp_(-GRAD_CLAMP, GRAD_CLAMP)


def sorted_eigh(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of symmetric (M, r, r) factors, eigenvalues in descending order.

    Non-finite factors are replaced by zeros first (eigh would fail on them); callers mark such
    modules invalid separately.

    Returns:
        evals (M, r) descending and evecs (M, r, r) whose columns follow the same order.
    """
    clean = torch.nan_to_num(symmetrize(cov.float()), nan=0.0, posinf=0.0, neginf=0.0)
    evals, evecs = torch.linalg.eigh(clean)
    return evals.flip(-1), evecs.flip(-1)


def tau_rank(evals: torch.Tensor, tau: float, min_rank: int) -> torch.Tensor:
    """The τ-energy rank rule of reprojection (spec section 5), per module.

    k = #{i : cumsum(λ)_i / Σλ < τ} + 1, clamped to [min_rank, r]; k = r when Σλ ≤ 1e-6.
    Example: λ = [0.9, 0.05, 0.03, 0.02], τ = 0.99 → cumsum = [0.9, 0.95, 0.98, 1.0] → k = 4.

    Args:
        evals: (M, r) eigenvalues in descending order.

    Returns:
        (M,) int64 ranks.
    """
    r = evals.shape[-1]
    total = evals.sum(-1, keepdim=True)
    energy = evals.cumsum(-1) / total.clamp_min(1e-30)
    k = (energy < tau).sum(-1) + 1
    k = torch.where(total.squeeze(-1) > 1e-6, k, torch.full_like(k, r))
    return k.clamp(min=min(min_rank, r), max=r)


def projector(evecs: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """P = V_k V_kᵀ onto the top-k eigenvectors of each module: (M, r, r), k (M,) → (M, r, r)."""
    r = evecs.shape[-1]
    keep = (torch.arange(r, device=evecs.device) < k[:, None]).to(evecs.dtype)  # (M, r)
    return (evecs * keep[:, None, :]) @ evecs.mT


def effective_rank(evals: torch.Tensor) -> torch.Tensor:
    """Entropy effective rank exp(H(p)), p = λ⁺ / Σλ⁺, per module; 0 for an empty spectrum.

    Args:
        evals: (M, r) eigenvalues (any order).

    Returns:
        (M,) values in [0, r].
    """
    lam = evals.float().clamp_min(0.0)
    total = lam.sum(-1, keepdim=True)
    p = (lam / total.clamp_min(1e-30)).clamp_min(1e-12)
    ranks = torch.exp(-(p * p.log()).sum(-1)).clamp(max=evals.shape[-1])
    valid = torch.isfinite(ranks) & (total.squeeze(-1) > 0)
    return torch.where(valid, ranks, torch.zeros_like(ranks))


def penalty_matrix(
    cov: torch.Tensor, proj: torch.Tensor | None, lambda_kfac: float, lambda_reproj: float
) -> torch.Tensor:
    """K = λ_K·Σ + λ_R·(I − P), so that one quadratic form gives both regularisers (section 6).

    tr(Aᵀ K A) = λ_K·tr(Aᵀ Σ A) + λ_R·‖(I − P) A‖²_F because I − P is a symmetric idempotent.
    Σ and P are constants (detached): no gradient flows into the statistics.
    """
    k_mat = lambda_kfac * symmetrize(cov.detach().float())
    if proj is not None and lambda_reproj != 0.0:
        eye = torch.eye(cov.shape[-1], device=cov.device, dtype=k_mat.dtype)
        k_mat = k_mat + lambda_reproj * (eye - proj.detach().float())
    return k_mat


def quadratic_penalty_left(weights: torch.Tensor, k_mat: torch.Tensor) -> torch.Tensor:
    """Σ_m tr(A_mᵀ K_m A_m) for A-side weights (M, r, d_in); d/dA = 2 K A for symmetric K."""
    w = weights.float()
    return (w * torch.bmm(k_mat, w)).sum()


def quadratic_penalty_right(weights: torch.Tensor, k_mat: torch.Tensor) -> torch.Tensor:
    """Σ_m tr(B_m K_m B_mᵀ) for B-side weights (M, d_out, r); d/dB = 2 B K for symmetric K."""
    w = weights.float()
    return (w * torch.bmm(w, k_mat)).sum()


def adaptive_damping(losses: torch.Tensor) -> torch.Tensor:
    """The reference damping override: clip(1e-3 + std(losses), 1e-6, 1e-2) (spec section 3).

    Args:
        losses: (n,) the last n ≤ 20 per-step losses (unbiased variance, as torch's .var()).
    """
    return (1e-3 + losses.float().var().sqrt()).clamp(1e-6, 1e-2)


def loss_improving(losses: torch.Tensor) -> torch.Tensor:
    """True when the newer half of a loss window has a mean < 0.99 × the older half's (section 7).

    Args:
        losses: (2h,) oldest first.
    """
    half = losses.shape[0] // 2
    return losses[half:].mean() < 0.99 * losses[:half].mean()


def adapted_frequency(base: int, improving: bool, max_freq: int) -> int:
    """1.5 × base while the loss improves, else 0.75 × base, clamped to [1, max_freq]."""
    freq = int(base * 1.5) if improving else int(base * 0.75)
    return max(1, min(freq, max_freq))
