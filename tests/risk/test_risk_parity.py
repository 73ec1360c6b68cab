"""Parity with the PyPI package alignment-risk 1.14.1 (a test-only oracle) on model=tiny.

Both implementations get the same model, the same parameter names, the same safety and
fine-tuning batches and the same loss functions; the package runs with its defaults (loop
gradients, full SVD, mode="lora" with an explicit allowlist) under the math attention kernel (the
only one with a double backward, which its HVP needs as well).

Tolerance 1e-5: scalars within 1e-5 absolute or relative; the forecast arrays grow like t^4 over
12 orders of magnitude, so they are compared within 1e-5 relative (plus 1e-5 absolute near 0).
The two differ only in fp32 rounding (vmap vs loop gradients, summation order): about 1e-7
relative here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from alignment.risk import AlignGuard, assess, estimate_subspace, forecast_collapse
from alignment.risk.preflight import math_attention

ar = pytest.importorskip(
    "alignment_risk", reason="alignment-risk (the parity oracle) not installed"
)
SAMPLES = 20  # 8 + 8 + 4: the last safety batch is cut short
TOL = dict(rel=1e-5, abs=1e-5)


def package_report(t, learning_rate: float):
    config = ar.PipelineConfig(
        fisher=ar.FisherConfig(
            parameter_names=t.selection.names, device="cpu", max_samples=SAMPLES
        ),
        curvature=ar.CurvatureConfig(device="cpu"),
        mode="lora",
        learning_rate=learning_rate,
    )
    with math_attention(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ar.AlignmentRiskPipeline(config).run(
            t.model, t.safety, t.safety_loss, t.ft, t.ft_loss
        )


@pytest.fixture(scope="module")
def subspaces(tiny_risk):
    t = tiny_risk
    return {
        backend: estimate_subspace(
            t.model,
            t.selection,
            t.safety,
            t.safety_loss,
            max_samples=SAMPLES,
            backend=backend,
            progress=False,
        )  # fmt: skip
        for backend in ("loop", "vmap")
    }


@pytest.mark.parametrize("backend", ["loop", "vmap"])
def test_subspace_matches_package(tiny_risk, subspaces, backend):
    ours, theirs = subspaces[backend], package_report(tiny_risk, 1e-4).subspace
    assert ours.backend == backend and ours.samples == SAMPLES
    assert ours.rank == theirs.fisher_eigenvalues.numel() and 1 < ours.rank < SAMPLES
    np.testing.assert_allclose(ours.eigenvalues, theirs.fisher_eigenvalues, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.fisher_diagonal, theirs.fisher_diagonal, rtol=1e-5, atol=1e-8)
    assert ours.module_scores.keys() == theirs.module_scores.keys()
    for name, score in theirs.module_scores.items():
        assert ours.module_scores[name] == pytest.approx(score, rel=1e-5, abs=1e-9)


def _lr_for(report, step: int, loss: float) -> float:
    """The eta at which the forecast's loss(step) equals `loss` (bisection in log eta; loss(step)
    grows with eta once gamma eta t / 2 > eps, which holds over the bracket)."""
    lo, hi = 1e-6, 10.0
    for _ in range(80):
        mid = (lo * hi) ** 0.5
        eps, gamma = mid * report.coupling.eps_hat, mid**2 * report.coupling.gamma_hat
        f = forecast_collapse(report.lambda_min, gamma, eps)
        lo, hi = (mid, hi) if f.estimated_loss[step] < loss else (lo, mid)
    return hi


@pytest.mark.parametrize(
    "case", ["default_lr", "early_collapse", "late_collapse_refined", "no_collapse_refined"]
)
def test_assessment_matches_package(tiny_risk, subspaces, case):
    t, subspace = tiny_risk, subspaces["loop"]
    probe = assess(t.model, t.selection, subspace, t.ft, t.ft_loss, refine=False)
    lr = {
        "default_lr": 1e-4,
        "early_collapse": _lr_for(probe, 50, 0.1),  # collapse at step 50
        "late_collapse_refined": _lr_for(probe, 1500, 0.1),  # collapse_step >= T / 2
        "no_collapse_refined": _lr_for(probe, 2000, 0.07),  # loss(T) >= threshold / 2
    }[case]
    ours = assess(t.model, t.selection, subspace, t.ft, t.ft_loss, learning_rate=lr)
    theirs = package_report(t, lr)
    assert ours.overlap.ratio == pytest.approx(theirs.initial_risk.projected_ratio, **TOL)
    assert ours.overlap.update_norm == pytest.approx(theirs.initial_risk.update_norm, **TOL)
    assert ours.coupling.eps_hat == pytest.approx(theirs.curvature.epsilon_hat, **TOL)
    assert ours.coupling.gamma_hat == pytest.approx(theirs.curvature.gamma_hat, **TOL)
    assert ours.coupling.hvp_norm == pytest.approx(theirs.curvature.acceleration_norm, **TOL)
    assert ours.forecast.collapse_step == theirs.forecast.collapse_step
    assert ours.warning == theirs.warning
    for name in ("projected_drift", "estimated_loss", "quartic_lower_bound", "times"):
        np.testing.assert_allclose(
            getattr(ours.forecast, name), getattr(theirs.forecast, name), rtol=1e-5, atol=1e-5
        )
    # Each case exercises the branch it is named for.
    collapse = ours.forecast.collapse_step
    if case == "default_lr":
        assert collapse is None and not ours.refined
    elif case == "early_collapse":
        assert collapse is not None and collapse < 1000 and not ours.refined
    elif case == "late_collapse_refined":
        assert ours.refined and "refined" in theirs.warning
    else:
        assert ours.refined and collapse is None


def test_alignguard_matches_package(tiny_risk, subspaces):
    """Same anchor, subspace and displacement: each term, the total and its gradient agree."""
    t, s = tiny_risk, subspaces["loop"]
    theirs_subspace = ar.SensitivitySubspace(
        parameter_slices=[ar.ParameterSlice(x.name, x.start, x.end, x.shape) for x in s.slices],
        fisher_eigenvalues=s.eigenvalues,
        fisher_eigenvectors=s.eigenvectors,
        fisher_diagonal=s.fisher_diagonal,
        module_scores=s.module_scores,
        top_weight_indices=s.top_weight_indices,
        top_weight_scores=s.top_weight_scores,
    )
    names, params = t.selection.names, t.selection.params
    theirs = ar.AlignGuardLoRARegularizer(t.model, subspace=theirs_subspace, parameter_names=names)
    ours = AlignGuard(names, params, s.eigenvectors, s.eigenvalues, s.fisher_diagonal)
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for p in params:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        b = theirs.regularized_loss(torch.zeros(()))
        total, terms = ours()
        expected = {
            "reg/fisher": b.alignment_penalty,
            "reg/task": b.task_stability_penalty,
            "reg/e_rm": 0.1 * 0.5 * b.collision_riemannian,
            "reg/e_geo": 0.1 * 0.5 * b.collision_geodesic,
        }
        for name, value in expected.items():
            assert terms[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-9), name
        assert total.item() == pytest.approx(b.total_loss.item(), rel=1e-5)
        assert terms["reg/fisher"].item() > 0 and terms["reg/e_rm"].item() > 0
        ours_grad = torch.autograd.grad(total, params)
        theirs_grad = torch.autograd.grad(b.total_loss, params)
        for mine, ref in zip(ours_grad, theirs_grad, strict=True):
            torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-8)
    finally:
        with torch.no_grad():
            for p, v in zip(params, saved, strict=True):
                p.copy_(v)
