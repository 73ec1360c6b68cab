"""The method registry: a name -> how to compute its loss, what data and reference it needs.

A new method is one loss in alignment/losses/, one entry here, one conf/method/ YAML, one test
file and one PAPERS.md line. Nothing else in the package branches on a method's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from alignment.config import (
    BaselineConfig,
    CitaConfig,
    DpoConfig,
    FactualDpoConfig,
    MethodConfig,
    SftConfig,
)
from alignment.data.sources import flip_unfactual_winners
from alignment.losses import LossOutput, cita_loss, dpo_loss, factual_dpo_loss, seq_kl, sft_loss
from alignment.registry import Registry


@dataclass
class PolicyBatch:
    """Per-sequence quantities of one micro-batch, gathered by the trainer. Shapes (B,).

    The reference fields are filled only when the method needs a reference; `token_kl` only when
    it needs full reference logits (CITA with kl_estimator=token_full_vocab).
    """

    chosen_logps: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_logps: torch.Tensor | None = None
    rejected_tokens: torch.Tensor | None = None
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None
    h_w: torch.Tensor | None = None
    h_l: torch.Tensor | None = None
    token_kl: torch.Tensor | None = None


@dataclass(frozen=True)
class Method:
    name: str
    schema: type[MethodConfig]
    loss: Callable[[MethodConfig, PolicyBatch], LossOutput] | None  # None: no training
    needs_pairs: bool
    needs_reference: Callable[[MethodConfig], bool]
    needs_reference_logits: Callable[[MethodConfig], bool] = lambda cfg: False
    needs_flags: Callable[[MethodConfig], bool] = lambda cfg: False
    # Only CITA conditions on the instruction; the other methods are its NoInstruct baselines.
    uses_instruction: Callable[[MethodConfig], bool] = lambda cfg: False
    # A data transform applied before the split, returning (examples, counts to log).
    transform: Callable[[MethodConfig, list], tuple[list, dict[str, int]]] | None = None

    @property
    def trains(self) -> bool:
        return self.loss is not None


METHODS: Registry[Method] = Registry("method")


def get_method(cfg: MethodConfig) -> Method:
    method = METHODS.get(cfg.name)
    if not isinstance(cfg, method.schema):
        raise TypeError(
            f"method {cfg.name!r} needs a {method.schema.__name__}, got {type(cfg).__name__}"
        )
    return method


def _dpo(cfg: DpoConfig, b: PolicyBatch) -> LossOutput:
    ref_c, ref_r = (b.ref_chosen_logps, b.ref_rejected_logps)
    if cfg.reference_free:
        ref_c = ref_r = torch.zeros_like(b.chosen_logps)
    return dpo_loss(
        b.chosen_logps,
        b.rejected_logps,
        ref_c,
        ref_r,
        beta=cfg.beta,
        label_smoothing=cfg.label_smoothing,
    )


def _factual(cfg: FactualDpoConfig, b: PolicyBatch) -> LossOutput:
    return factual_dpo_loss(
        b.chosen_logps,
        b.rejected_logps,
        b.ref_chosen_logps,
        b.ref_rejected_logps,
        b.h_w,
        b.h_l,
        beta=cfg.beta,
        delta=cfg.delta,
        delta_inside_beta=cfg.delta_inside_beta,
        label_smoothing=cfg.label_smoothing,
    )


def _cita(cfg: CitaConfig, b: PolicyBatch) -> LossOutput:
    if cfg.lambda_kl == 0:  # no anchor: nothing was computed for it (token_kl is None)
        kl = b.chosen_logps.new_zeros(())
    elif cfg.kl_estimator == "token_full_vocab":
        kl = b.token_kl
    else:
        kl = seq_kl(
            b.chosen_logps,
            b.rejected_logps,
            b.ref_chosen_logps,
            b.ref_rejected_logps,
            squared=cfg.kl_estimator == "seq_sq",
        )
    nll = -(b.chosen_logps.sum() / b.chosen_tokens.sum().clamp(min=1))
    return cita_loss(
        b.chosen_logps,
        b.rejected_logps,
        b.ref_chosen_logps,
        b.ref_rejected_logps,
        kl,
        beta=cfg.beta,
        lambda_kl=cfg.lambda_kl,
        reference_free=cfg.reference_free,
        log_eps=cfg.log_eps,
        chosen_nll=nll,
        lambda_sft=cfg.lambda_sft,
    )


def _sft(cfg: SftConfig, b: PolicyBatch) -> LossOutput:
    return sft_loss(b.chosen_logps, b.chosen_tokens)


def _flip(cfg: FactualDpoConfig, examples: list) -> tuple[list, dict[str, int]]:
    """Bucket counts always; the (1, 0) -> (0, 1) flip only when flip_unfactual_winner is on."""
    flipped, counts = flip_unfactual_winners(examples)
    if not cfg.flip_unfactual_winner:
        counts["flipped"] = 0
        return examples, counts
    return flipped, counts


def _cita_needs_reference(cfg: CitaConfig) -> bool:
    return not cfg.reference_free or (cfg.lambda_kl > 0)


METHODS.add("baseline", Method("baseline", BaselineConfig, None, False, lambda cfg: False))
METHODS.add("sft", Method("sft", SftConfig, _sft, False, lambda cfg: False))
METHODS.add("dpo", Method("dpo", DpoConfig, _dpo, True, lambda cfg: not cfg.reference_free))
METHODS.add(
    "factual_dpo",
    Method(
        "factual_dpo",
        FactualDpoConfig,
        _factual,
        True,
        lambda cfg: True,
        needs_flags=lambda cfg: cfg.delta != 0,
        transform=_flip,
    ),
)
METHODS.add(
    "cita",
    Method(
        "cita",
        CitaConfig,
        _cita,
        True,
        _cita_needs_reference,
        needs_reference_logits=lambda cfg: (
            cfg.lambda_kl > 0 and cfg.kl_estimator == "token_full_vocab"
        ),
        uses_instruction=lambda cfg: cfg.use_instruction,
    ),
)
