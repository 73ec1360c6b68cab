"""Mixing the axis experts: over adapter deltas (inside the LoRA layers) or over logits.

`ExpertMix` makes every peft LoRA layer that holds all the experts compute

    y = W x + sum_a c[b, a] * scaling_a * B_a A_a dropout_a(x)           per batch row b

with peft's own adapter path switched off, so one forward can weight the experts differently per
row. The coefficients c (B, A) say everything: gamma * one_hot(a) is expert a alone with task
vector gamma (gamma = 1 is the plain LoRA expert), gamma * w with w the calibrated router weights
is `alignx.mix=adapters`, and a one-hot row per example trains each row's own expert.
`mix_logits` is `alignx.mix=logits`: sum_a w[b, a] * logits_a, one forward per expert.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from alignment.alignx.task_vectors import lora_layers


class ExpertMix:
    """Context manager: inside it, the LoRA layers of `model` add the `coeffs`-weighted deltas of
    `adapters` (set `coeffs` (B, A) or (A,) before each forward)."""

    def __init__(self, model: nn.Module, adapters: Sequence[str]) -> None:
        self.adapters = list(adapters)
        self.layers = [
            layer
            for layer in lora_layers(model).values()
            if all(a in layer.lora_A for a in self.adapters)
        ]
        if not self.layers:
            raise ValueError(f"the model has no LoRA layer holding all of {self.adapters}")
        variants = [a for layer in self.layers for a in self.adapters if a in layer.lora_variant]
        if variants:
            raise ValueError(
                f"expert mixing supports plain LoRA only; {variants[0]!r} is a variant"
            )
        self.coeffs: torch.Tensor | None = None
        self._handles: list = []
        self._saved: list[bool] = []

    def __enter__(self) -> ExpertMix:
        for layer in self.layers:
            # peft's own per-adapter path is skipped through its disable flag; the public
            # enable_adapters(False) would also set requires_grad=False on the experts.
            self._saved.append(layer._disable_adapters)
            layer._disable_adapters = True
            self._handles.append(layer.register_forward_hook(self._add_deltas))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        for layer, saved in zip(self.layers, self._saved, strict=True):
            layer._disable_adapters = saved
        self._handles, self._saved = [], []

    def _add_deltas(self, layer: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        if self.coeffs is None:
            raise RuntimeError("ExpertMix.coeffs must be set before the forward")
        x = args[0]
        c = self.coeffs.to(output.device, output.dtype)
        if c.dim() == 2:  # (B, A) -> broadcast over the sequence dims of the output
            c = c.reshape(c.shape[0], *([1] * (output.dim() - 2)), c.shape[1])
        result = output
        for i, name in enumerate(self.adapters):
            a, b = layer.lora_A[name], layer.lora_B[name]
            xa = x.to(a.weight.dtype)
            delta = b(a(layer.lora_dropout[name](xa))) * layer.scaling[name]
            result = result + c[..., i : i + 1] * delta.to(output.dtype)
        return result


def one_hot_coeffs(axis: torch.Tensor, n_axes: int, gamma: float = 1.0) -> torch.Tensor:
    """gamma * one_hot(axis): each row uses its own expert. axis (B,) long -> (B, A)."""
    return gamma * nn.functional.one_hot(axis, n_axes).float()


def mix_logits(expert_logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_a weights[b, a] * expert_logits[a, b]. Shapes: (A, B, S, V), (B, A) -> (B, S, V)."""
    return torch.einsum("absv,ba->bsv", expert_logits, weights.to(expert_logits.dtype))
