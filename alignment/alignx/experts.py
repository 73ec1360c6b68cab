"""The stage-1 axis experts: one LoRA adapter per axis in a single peft model, and the hook-in
that lets each batch row use its own expert (or any weighted mix of them).

A saved expert set is `<dir>/<axis>/adapter_model.safetensors` per axis (peft's layout for
named adapters), so evaluation and stage 2 reload exactly what stage 1 trained.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

from alignment.alignx.mixing import ExpertMix
from alignment.config import ModelConfig
from alignment.models import peft_lora_config

log = logging.getLogger(__name__)


def load_experts(
    model_cfg: ModelConfig,
    cache_dir: str,
    device: torch.device,
    axes: list[str],
    saved: Path | None = None,
    trainable: bool = True,
) -> PeftModel:
    """The base model with one LoRA adapter per axis: new ones from model.lora, or the saved set.

    When trainable, every expert's LoRA weights train (peft alone would train only the active
    adapter); the base stays frozen (and may be 4-bit).
    """
    from alignment.models import load_base

    base = load_base(model_cfg, cache_dir, device)
    if model_cfg.quantization != "none" and trainable:
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=model_cfg.gradient_checkpointing
        )
    elif model_cfg.gradient_checkpointing and trainable:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    if saved is not None:
        for axis in axes:
            if not (saved / axis / "adapter_config.json").is_file():
                raise FileNotFoundError(f"AlignX-repro expert not found: {saved / axis}")
        first = str(saved / axes[0])
        model = PeftModel.from_pretrained(base, first, adapter_name=axes[0], is_trainable=trainable)
        for axis in axes[1:]:
            model.load_adapter(str(saved / axis), adapter_name=axis, is_trainable=trainable)
    else:
        config = peft_lora_config(model_cfg.lora)
        model = get_peft_model(base, config, adapter_name=axes[0])
        for axis in axes[1:]:
            model.add_adapter(axis, config)
    for name, param in model.named_parameters():
        param.requires_grad_(trainable and "lora_" in name)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("AlignX-repro experts %s: %d trainable parameters", axes, n_train)
    return model


class ExpertsExtension:
    """Hooks the experts in as weighted deltas (alignment.alignx.mixing.ExpertMix): set `coeffs`
    (B, A) before a forward. Follows SteeredModel's Extension protocol; saving the experts is
    the peft model's own save_pretrained, so `save` writes nothing more."""

    def __init__(self, axes: list[str]) -> None:
        self.axes = list(axes)
        self.mix: ExpertMix | None = None

    @property
    def attached(self) -> bool:
        return self.mix is not None

    @property
    def coeffs(self) -> torch.Tensor | None:
        return self.mix.coeffs if self.mix is not None else None

    @coeffs.setter
    def coeffs(self, value: torch.Tensor) -> None:
        if self.mix is None:
            raise RuntimeError("the experts are not attached")
        self.mix.coeffs = value

    def attach(self, model) -> ExpertsExtension:
        if self.mix is not None:
            raise RuntimeError("the experts are already attached")
        self.mix = ExpertMix(model, self.axes).__enter__()
        return self

    def remove(self) -> None:
        if self.mix is not None:
            self.mix.__exit__(None, None, None)
            self.mix = None

    def save(self, directory: Path) -> Path:
        return directory
