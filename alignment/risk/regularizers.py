"""The regularizer registry: a name -> its schema and how it is built from the preflight.

A regularizer is an extra training-loss term for every method and optimizer: the trainer calls
it in each training step and adds its total to the method's loss, logging each term. Its
schema's keys (less `name` and the builder's own `build_keys`) must be exactly the keyword
arguments of its term function; registration checks that, as the method registry does.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from alignment.config.checks import check, check_choice
from alignment.config.risk import RegularizerConfig
from alignment.registry import Registry
from alignment.risk.alignguard import H_CHOICES, AlignGuard, alignguard_terms
from alignment.risk.params import Selection
from alignment.risk.subspace import SafetySubspace

# () -> (total added to the loss, {term name: contribution}); called in every training step.
Regularizer = Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class AlignGuardConfig(RegularizerConfig):
    """AlignGuard-style LoRA regulariser (spec/alignment_risk.md section 5; Das et al. 2025,
    arXiv 2508.02079), anchored at the adapter when training starts.

    lambda_a: Fisher-weighted penalty on the alignment-critical part V V^T Delta.
    lambda_t: task-stability penalty on the rest, weighted by h (fisher_diagonal or identity).
    lambda_nc, alpha, beta, tau: collision penalty lambda_nc [alpha E_RM + (1 - alpha) E_geo].
      E_geo is ~0 under the exact orthogonal split (logged as reg/e_geo so that stays visible).
    eps: E_geo's denominator guard.
    """

    lambda_a: float = 0.25
    lambda_t: float = 0.5
    lambda_nc: float = 0.1
    alpha: float = 0.5
    beta: float = 4.0
    tau: float = 0.01
    eps: float = 1e-12
    h: str = "fisher_diagonal"

    def __post_init__(self) -> None:
        for key in ("lambda_a", "lambda_t", "lambda_nc", "beta", "tau"):
            check(f"regularizer.{key}", getattr(self, key), ge=0)
        check("regularizer.alpha", self.alpha, ge=0, le=1)
        check("regularizer.eps", self.eps, gt=0)
        check_choice("regularizer.h", self.h, H_CHOICES)


@dataclass(frozen=True)
class RegularizerEntry:
    name: str
    schema: type[RegularizerConfig]
    terms: Callable[..., dict[str, torch.Tensor]]
    build: Callable[[RegularizerConfig, Selection, SafetySubspace], Regularizer]
    build_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        params = inspect.signature(self.terms).parameters.values()
        keyword = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        fields = {f.name for f in dataclasses.fields(self.schema)} - {"name", *self.build_keys}
        if fields != keyword:
            raise TypeError(
                f"regularizer {self.name!r}: config keys {sorted(fields - keyword)} are not term "
                f"arguments; term arguments {sorted(keyword - fields)} have no config key"
            )

    def hyperparameters(self, cfg: RegularizerConfig) -> dict[str, float]:
        skip = {"name", *self.build_keys}
        return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in skip}


REGULARIZERS: Registry[RegularizerEntry] = Registry("regularizer")


def register(entry: RegularizerEntry) -> RegularizerEntry:
    REGULARIZERS.add(entry.name, entry)
    return entry


def _alignguard(cfg: AlignGuardConfig, selection: Selection, subspace: SafetySubspace):
    return AlignGuard(
        selection.names,
        selection.params,
        subspace.eigenvectors,
        subspace.eigenvalues,
        subspace.fisher_diagonal,
        h=cfg.h,
        **REGULARIZERS.get("alignguard").hyperparameters(cfg),
    )


register(RegularizerEntry("alignguard", AlignGuardConfig, alignguard_terms, _alignguard, ("h",)))


def build_regularizer(
    cfg: RegularizerConfig, selection: Selection, subspace: SafetySubspace
) -> Regularizer:
    """The configured regularizer, anchored at the selected parameters' current values."""
    return REGULARIZERS.get(cfg.name).build(cfg, selection, subspace)
