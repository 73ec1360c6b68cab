"""Which parameters the preflight analyses: name patterns -> a flat, ordered parameter vector.

The Fisher, the overlap, the curvature coupling and AlignGuard all work on one flattened vector
of the selected parameters, in the model's own parameter order. `ParamSlice` maps a block of that
vector back to its parameter name (for the sensitivity map and the top weights).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch

# The package's scale guard: the per-sample gradient matrix is max_samples x n floats.
DEFAULT_MAX_PARAMETERS = 500_000
# One attention block's LoRA factors in the last layer: small enough for every supported model
# (Llama-3-8B at r=16: 425,984 values) and cheap, since the backward stops one layer from the head.
DEFAULT_PATTERNS = ("*.layers.-1.self_attn.*lora_*",)
LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")
NEGATIVE_LAYER = re.compile(r"\.layers\.-(\d+)\.")


class RiskInputError(ValueError):
    """Bad preflight or regulariser input: one line naming the config key, raised before any
    training step."""


@dataclass(frozen=True)
class ParamSlice:
    name: str
    start: int
    end: int
    shape: tuple[int, ...]


@dataclass
class Selection:
    """The selected parameters, in model order, and where each lives in the flat vector."""

    names: list[str]
    params: list[torch.nn.Parameter]
    slices: list[ParamSlice]

    @property
    def numel(self) -> int:
        return self.slices[-1].end if self.slices else 0

    def flat(self) -> torch.Tensor:
        """The current values as one vector (n,), differentiable."""
        return torch.cat([p.reshape(-1) for p in self.params])

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Per-parameter tensors (e.g. gradients; None = zeros) as one vector (n,)."""
        parts = [
            torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if t is None else t.reshape(-1)
            for t, p in zip(tensors, self.params, strict=True)
        ]
        return torch.cat(parts)


def expand_patterns(patterns: Sequence[str], names: Sequence[str]) -> list[str]:
    """Count negative layer indices from the end, as Python does: `layers.-1.` becomes the
    highest `layers.<i>.` index among `names`, `layers.-2.` the one before, and so on."""
    if not any(NEGATIVE_LAYER.search(p) for p in patterns):
        return list(patterns)
    indices = [int(m.group(1)) for n in names for m in [LAYER_INDEX.search(n)] if m]
    if not indices:
        raise RiskInputError(
            "risk.parameter_names: 'layers.-1.' needs parameters named '...layers.<i>...', "
            f"found none among {len(names)} trainable parameters"
        )
    count = max(indices) + 1

    def resolve(match: re.Match) -> str:
        k = int(match.group(1))
        if k > count:
            raise RiskInputError(f"risk.parameter_names: layers.-{k} but the model has {count}")
        return f".layers.{count - k}."

    return [NEGATIVE_LAYER.sub(resolve, p) for p in patterns]


def select_parameters(
    model: torch.nn.Module,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    *,
    max_parameters: int = DEFAULT_MAX_PARAMETERS,
) -> Selection:
    """Trainable parameters whose full name matches any glob pattern (fnmatch, case-sensitive).

    Every pattern must match at least one trainable parameter, and the total count must not pass
    `max_parameters`; both fail with one line naming the `risk.parameter_names` option.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not patterns:
        raise RiskInputError("risk.parameter_names is empty: name at least one parameter pattern")
    expanded = expand_patterns(patterns, [n for n, _ in trainable])
    for raw, pattern in zip(patterns, expanded, strict=True):
        if not any(fnmatchcase(n, pattern) for n, _ in trainable):
            example = trainable[0][0] if trainable else "none: the model has no trainable ones"
            raise RiskInputError(
                f"risk.parameter_names: pattern {raw!r} matches no trainable parameter "
                f"(names look like {example!r})"
            )
    chosen = [(n, p) for n, p in trainable if any(fnmatchcase(n, pat) for pat in expanded)]
    total = sum(p.numel() for _, p in chosen)
    if total > max_parameters:
        raise RiskInputError(
            f"risk.parameter_names selects {total:,} parameters ({len(chosen)} tensors), more than "
            f"risk.max_parameters={max_parameters:,}: restrict risk.parameter_names to a few LoRA "
            f"modules, e.g. ['{DEFAULT_PATTERNS[0]}']"
        )
    slices, start = [], 0
    for name, p in chosen:
        slices.append(ParamSlice(name, start, start + p.numel(), tuple(p.shape)))
        start += p.numel()
    return Selection([n for n, _ in chosen], [p for _, p in chosen], slices)


def is_lora(name: str) -> bool:
    """The package's LoRA markers (lora_, lora_A, lora_B) all contain "lora_"."""
    return "lora_" in name
