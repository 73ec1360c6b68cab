"""AlignGuard-style LoRA regulariser (Das et al., arXiv 2508.02079; spec/alignment_risk.md s. 5).

Over the flattened selected LoRA parameters theta, anchored at theta_ref (the adapter when
training starts), with Delta = theta - theta_ref, V (n, d) the safety eigenvectors, lambda (d,)
their eigenvalues and h (n,) the Fisher diagonal (or ones):

    Delta_A = V V^T Delta        (alignment-critical part)     Delta_T = Delta - Delta_A
    reg/fisher = lambda_A * sum_j lambda_j (v_j^T Delta_A)^2
    reg/task   = lambda_T * sum_i h_i Delta_T,i^2
    reg/e_rm   = lambda_NC * alpha * E_RM
    reg/e_geo  = lambda_NC * (1 - alpha) * E_geo
    E_RM  = mean_i (1 + beta sigmoid(|Delta_A,i + Delta_T,i| - tau)) |Delta_A,i Delta_T,i|
    E_geo = <Delta_A, Delta_T>^2 / (||Delta_A||^2 ||Delta_T||^2 + eps)

The four entries are each term's contribution to the loss; their sum is what is added. With this
exact orthogonal split <Delta_A, Delta_T> = 0 up to round-off, so E_geo is inert (kept and logged
so that stays visible); only E_RM (element-wise overlap) acts. Defaults: lambda_A 0.25,
lambda_T 0.5, lambda_NC 0.1, alpha 0.5, beta 4, tau 0.01, eps 1e-12.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from alignment.risk.params import RiskInputError, is_lora

TERMS = ("reg/fisher", "reg/task", "reg/e_rm", "reg/e_geo")
H_CHOICES = ("fisher_diagonal", "identity")


def alignguard_terms(
    delta: torch.Tensor,
    basis: torch.Tensor,
    eigenvalues: torch.Tensor,
    h: torch.Tensor,
    *,
    lambda_a: float = 0.25,
    lambda_t: float = 0.5,
    lambda_nc: float = 0.1,
    alpha: float = 0.5,
    beta: float = 4.0,
    tau: float = 0.01,
    eps: float = 1e-12,
) -> dict[str, torch.Tensor]:
    """Each term's contribution (scalar tensors) for update delta (n,); see the module docstring."""
    delta_a = basis @ (basis.T @ delta)
    delta_t = delta - delta_a
    coeff = basis.T @ delta_a
    fisher = eigenvalues.clamp(min=0.0) * coeff.square()
    weight = 1.0 + beta * torch.sigmoid((delta_a + delta_t).abs() - tau)
    e_rm = torch.mean(weight * (delta_a * delta_t).abs())
    e_geo = torch.dot(delta_a, delta_t) ** 2 / (delta_a.norm() ** 2 * delta_t.norm() ** 2 + eps)
    return {
        "reg/fisher": lambda_a * fisher.sum(),
        "reg/task": lambda_t * torch.sum(h.clamp(min=0.0) * delta_t.square()),
        "reg/e_rm": lambda_nc * alpha * e_rm,
        "reg/e_geo": lambda_nc * (1.0 - alpha) * e_geo,
    }


def check_hparams(**values: float) -> None:
    for name, value in values.items():
        ok = math.isfinite(value) and value >= 0.0
        if name == "alpha":
            ok = ok and value <= 1.0
        if name == "eps":
            ok = ok and value > 0.0
        if not ok:
            raise RiskInputError(f"regularizer.{name} is out of range: {value}")


class AlignGuard:
    """The regulariser bound to live parameters and anchored at their current values.

    `names` are the parameters' names; each must be a LoRA factor (lora_A / lora_B). The subspace
    tensors are moved to the parameters' device and dtype once.
    """

    def __init__(
        self,
        names: Sequence[str],
        params: Sequence[torch.nn.Parameter],
        basis: torch.Tensor,
        eigenvalues: torch.Tensor,
        fisher_diagonal: torch.Tensor,
        *,
        h: str = "fisher_diagonal",
        **hparams: float,
    ) -> None:
        not_lora = [n for n in names if not is_lora(n)]
        if not names or not_lora:
            what = f"e.g. {not_lora[0]!r}" if not_lora else "none selected"
            raise RiskInputError(
                "regularizer=alignguard needs LoRA modules: risk.parameter_names must select "
                f"only LoRA factors (lora_A/lora_B) of an attached adapter ({what})"
            )
        if h not in H_CHOICES:
            raise RiskInputError(f"regularizer.h must be one of {H_CHOICES}, got {h!r}")
        check_hparams(**hparams)
        self.params, self.hparams = list(params), hparams
        device, dtype = self.params[0].device, self.params[0].dtype
        self.basis = basis.to(device=device, dtype=dtype)
        self.eigenvalues = eigenvalues.to(device=device, dtype=dtype).clamp(min=0.0)
        diag = fisher_diagonal.to(device=device, dtype=dtype).clamp(min=0.0)
        self.h = diag if h == "fisher_diagonal" else torch.ones_like(diag)
        if self.basis.shape[0] != self.h.numel() or self.h.numel() != self._flat().numel():
            raise ValueError("AlignGuard: the subspace does not match the selected parameters")
        self.anchor = self._flat().detach().clone()

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in self.params])

    def reset_anchor(self) -> None:
        self.anchor = self._flat().detach().clone()

    def __call__(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the total to add to the loss, each term's contribution)."""
        terms = alignguard_terms(
            self._flat() - self.anchor, self.basis, self.eigenvalues, self.h, **self.hparams
        )
        return torch.stack(list(terms.values())).sum(), terms
