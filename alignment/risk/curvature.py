"""The first fine-tuning update against the safety subspace, and the curvature coupling.

spec/alignment_risk.md sections 2-3, with P = V V^T the projector onto span(V):

    delta = -eta * grad L_ft (first batch);   ratio = ||P delta|| / ||delta|| clipped to [0, 1]
    g = grad L_ft (mean over the first batches);   a = H g   (Hessian-vector product)
    eps_hat   = sqrt(sum_j lambda_j (v_j^T g)^2) = ||F^{1/2} P g||
    gamma_hat = sqrt(sum_j lambda_j (v_j^T a)^2) = ||F^{1/2} P H g||

H g is the gradient of g . stop_grad(g) (a double backward); it needs the model's ops to be
twice differentiable, which is why `preflight` runs under the math attention kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignment.risk.gradients import LossFn, batch_rows
from alignment.risk.params import Selection


@dataclass
class Overlap:
    ratio: float
    update_norm: float
    projected_norm: float
    low_overlap: bool  # ratio <= orthogonality_threshold: curvature may still pull it in


@dataclass
class Coupling:
    eps_hat: float
    gamma_hat: float
    hvp_norm: float  # ||a||
    projected_hvp_norm: float  # ||P a||


def overlap_ratio(
    delta: torch.Tensor, basis: torch.Tensor, *, orthogonality_threshold: float = 0.05
) -> Overlap:
    """||V V^T delta|| / ||delta|| for delta (n,) and orthonormal basis V (n, d)."""
    delta = delta.detach().to(device=basis.device, dtype=basis.dtype)
    norm = float(delta.norm())
    if norm == 0.0:
        return Overlap(0.0, 0.0, 0.0, True)
    projected = float((basis @ (basis.T @ delta)).norm())
    ratio = min(1.0, max(0.0, projected / (norm + 1e-12)))
    return Overlap(ratio, norm, projected, ratio <= orthogonality_threshold)


def first_update(
    model: torch.nn.Module,
    selection: Selection,
    batch: dict,
    loss_fn: LossFn,
    *,
    learning_rate: float,
) -> torch.Tensor:
    """delta = -eta * grad of the fine-tuning loss on one batch, (n,) on the CPU (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        loss = loss_fn(model, batch)
        loss = loss.mean() if loss.ndim > 0 else loss
        grads = torch.autograd.grad(loss, selection.params, allow_unused=True)
    finally:
        model.train(was_training)
    return -learning_rate * selection.flatten(grads).detach().cpu()


def mean_loss(model, batches: Sequence[dict], loss_fn: LossFn) -> torch.Tensor:
    """The fine-tuning loss averaged over `batches`, each weighted by its number of rows."""
    total, weight = None, 0
    for batch in batches:
        loss = loss_fn(model, batch)
        loss = loss.mean() if loss.ndim > 0 else loss
        rows = batch_rows(batch)
        total = loss * rows if total is None else total + loss * rows
        weight += rows
    if total is None:
        raise ValueError("the fine-tuning data gave no batches")
    return total / float(weight)


def gradient_and_hvp(loss: torch.Tensor, selection: Selection) -> tuple[torch.Tensor, torch.Tensor]:
    """g = dL/dtheta and a = H g = d(g . stop_grad(g))/dtheta, both flat (n,)."""
    grads = torch.autograd.grad(loss, selection.params, create_graph=True, allow_unused=True)
    g = selection.flatten(grads)
    hvp = torch.autograd.grad(torch.dot(g, g.detach()), selection.params, allow_unused=True)
    return g.detach(), selection.flatten(hvp).detach()


def coupling_from_vectors(
    g: torch.Tensor, a: torch.Tensor, eigenvalues: torch.Tensor, basis: torch.Tensor
) -> Coupling:
    """eps_hat, gamma_hat, ||a|| and ||P a|| for gradient g and HVP a, both (n,)."""
    lam = eigenvalues.clamp(min=0.0).to(basis.dtype)
    g, a = g.to(basis.device, basis.dtype), a.to(basis.device, basis.dtype)
    g_coeff, a_coeff = basis.T @ g, basis.T @ a
    return Coupling(
        eps_hat=float(torch.sqrt(torch.sum(lam * g_coeff.square()))),
        gamma_hat=float(torch.sqrt(torch.sum(lam * a_coeff.square()))),
        hvp_norm=float(a.norm()),
        projected_hvp_norm=float((basis @ a_coeff).norm()),
    )


def curvature_coupling(
    model: torch.nn.Module,
    selection: Selection,
    batches: Sequence[dict],
    loss_fn: LossFn,
    eigenvalues: torch.Tensor,
    basis: torch.Tensor,
) -> Coupling:
    """Coupling of the fine-tuning gradient field with the safety subspace (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        loss = mean_loss(model, batches, loss_fn)
    finally:
        model.train(was_training)
    g, a = gradient_and_hvp(loss, selection)
    return coupling_from_vectors(g.cpu(), a.cpu(), eigenvalues, basis)
