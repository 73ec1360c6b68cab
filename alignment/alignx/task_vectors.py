"""Task arithmetic (the reference's Finetune_Pipeline.py): tau = theta_adapted - theta_base, and
theta = theta_base + gamma * tau (gamma = 1 in the reference).

For a LoRA expert the task vector of a wrapped linear layer is exactly its low-rank delta,
tau = scaling * B A, so `lora_task_vector` reads it without materialising an adapted model.
"""

from __future__ import annotations

import torch
from torch import nn


def task_vector(
    base: dict[str, torch.Tensor], adapted: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """tau = adapted - base, per parameter name. Both must have the same names and shapes."""
    if set(base) != set(adapted):
        missing = sorted(set(base) ^ set(adapted))
        raise ValueError(f"task vector: parameter names differ, e.g. {missing[:3]}")
    tau = {}
    for name, theta in base.items():
        if theta.shape != adapted[name].shape:
            shapes = f"{tuple(theta.shape)} vs {tuple(adapted[name].shape)}"
            raise ValueError(f"task vector: {name} has shapes {shapes}")
        tau[name] = adapted[name] - theta
    return tau


def apply_task_vector(
    base: dict[str, torch.Tensor], tau: dict[str, torch.Tensor], gamma: float
) -> dict[str, torch.Tensor]:
    """theta_base + gamma * tau for the names in tau; other parameters are returned unchanged.

    gamma = 0 gives the base weights exactly (x + 0 * tau == x for finite tau).
    """
    unknown = sorted(set(tau) - set(base))
    if unknown:
        raise ValueError(f"task vector names parameters the base lacks, e.g. {unknown[:3]}")
    return {
        name: theta + gamma * tau[name] if name in tau else theta for name, theta in base.items()
    }


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every peft LoRA layer of `model` by module name (those with lora_A/lora_B dicts)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(getattr(module, "lora_A", None), nn.ModuleDict)
        and hasattr(module, "base_layer")
    }


@torch.no_grad()
def lora_task_vector(model: nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """{"<module>.base_layer.weight": scaling * B @ A} for every layer that holds `adapter`."""
    tau = {}
    for name, layer in lora_layers(model).items():
        if adapter not in layer.lora_A:
            continue
        a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight  # (r, in), (out, r)
        tau[f"{name}.base_layer.weight"] = (b.float() @ a.float()) * layer.scaling[adapter]
    if not tau:
        raise ValueError(f"the model has no LoRA adapter named {adapter!r}")
    return tau
