"""The method registry: a name -> its schema, its loss, and what data and reference it needs.

`Method.loss` is generic wiring: the loss function's positional arguments are filled by name from
the `PolicyBatch` the trainer gathered, and its keyword-only arguments from the method's config
(every schema field but `name` and the fields the data preparation reads). The match between
schema and loss signature is checked when a method is registered, so a method whose config key
the loss ignores (or a loss argument no config sets) fails at import, not silently in a run.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from alignment.config.method import MethodConfig
from alignment.losses import LossOutput
from alignment.registry import Registry

Predicate = Callable[[Any], bool]


def never(cfg: Any) -> bool:
    return False


def always(cfg: Any) -> bool:
    return True


@dataclass
class PolicyBatch:
    """Per-sequence quantities of one micro-batch, gathered by the trainer. Shapes (B,) or ().

    The reference fields are filled only when the method needs a reference; `token_kl_sum`
    (summed full-vocabulary KL to the reference over response tokens) only when it needs the
    reference logits. `chosen_tokens_total` / `response_tokens_total` are the chosen / all
    response tokens per micro-batch, averaged over the gradient-accumulation window, for losses
    that average over tokens (so accumulation does not change the gradient).
    """

    policy_chosen_logps: torch.Tensor
    chosen_tokens: torch.Tensor
    policy_rejected_logps: torch.Tensor | None = None
    rejected_tokens: torch.Tensor | None = None
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None
    h_w: torch.Tensor | None = None
    h_l: torch.Tensor | None = None
    token_kl_sum: torch.Tensor | None = None
    chosen_tokens_total: torch.Tensor | None = None
    response_tokens_total: torch.Tensor | None = None


BATCH_FIELDS = frozenset(f.name for f in dataclasses.fields(PolicyBatch))


@dataclass(frozen=True)
class Method:
    """A registered method.

    loss_fn: a pure loss from alignment/losses (None: no training, the baseline).
    needs_pairs: the data must have a rejected response.
    needs_reference / needs_reference_logits / needs_flags / uses_instruction: predicates on the
      method's config (the trainer computes pi_ref log-probs, full pi_ref logits, requires h_w/h_l
      flags, keeps the system instruction).
    transform: (cfg, examples) -> (examples, counts to log), applied before the split.
    data_keys: schema fields read by the data preparation (transform, instruction), not the loss.
    tag_keys: schema fields that also become MLflow tags (grid axes such as Factual-DPO's delta).
    """

    name: str
    schema: type[MethodConfig]
    loss_fn: Callable[..., LossOutput] | None
    needs_pairs: bool = True
    needs_reference: Predicate = never
    needs_reference_logits: Predicate = never
    needs_flags: Predicate = never
    uses_instruction: Predicate = never
    transform: Callable[[Any, list], tuple[list, dict[str, int]]] | None = None
    data_keys: tuple[str, ...] = ()
    tag_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.loss_fn is not None:
            _check_signature(self)

    @property
    def trains(self) -> bool:
        return self.loss_fn is not None

    @cached_property
    def batch_args(self) -> tuple[str, ...]:
        params = inspect.signature(self.loss_fn).parameters.values()
        return tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)

    def hyperparameters(self, cfg: MethodConfig) -> dict[str, Any]:
        """The config keys the loss takes (every schema field but name and data_keys)."""
        skip = {"name", *self.data_keys}
        return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in skip}

    def loss(self, cfg: MethodConfig, batch: PolicyBatch) -> LossOutput:
        tensors = {n: getattr(batch, n) for n in self.batch_args if getattr(batch, n) is not None}
        return self.loss_fn(**tensors, **self.hyperparameters(cfg))

    def tags(self, cfg: MethodConfig) -> dict[str, str]:
        return {key: str(getattr(cfg, key)) for key in self.tag_keys}


def _check_signature(method: Method) -> None:
    params = inspect.signature(method.loss_fn).parameters.values()
    keyword = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    positional = {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD}
    fields = {f.name for f in dataclasses.fields(method.schema)} - {"name"}
    where = f"method {method.name!r} ({method.loss_fn.__name__})"
    if unknown := positional - BATCH_FIELDS:
        raise TypeError(f"{where}: arguments {sorted(unknown)} are not PolicyBatch fields")
    if missing := fields - set(method.data_keys) - keyword:
        raise TypeError(f"{where}: config keys {sorted(missing)} are not loss keyword arguments")
    if unset := keyword - fields:
        raise TypeError(f"{where}: loss arguments {sorted(unset)} have no config key")
    if stray := set(method.data_keys) - fields:
        raise TypeError(f"{where}: data_keys {sorted(stray)} are not config keys")


METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    METHODS.add(method.name, method)
    return method


def get_method(cfg: MethodConfig) -> Method:
    method = METHODS.get(cfg.name)
    if not isinstance(cfg, method.schema):
        raise TypeError(
            f"method {cfg.name!r} needs a {method.schema.__name__}, got {type(cfg).__name__}"
        )
    return method
