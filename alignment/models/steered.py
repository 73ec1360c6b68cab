"""A causal LM with a trainable module hooked into it (MAC's circuit), shaped for the Trainer.

`SteeredModel` wraps the base model (a peft model when LoRA trains alongside, else the frozen
base itself) and an `extension` that attaches itself with forward hooks. It behaves like the
model it wraps (forward, generate, config), and:

- `state_dict()` holds only the extension and the LoRA weights. The Trainer saves a non-peft
  model's state dict as its checkpoint and loads it back with strict=False, so a checkpoint of
  a steered 7B model is the circuit (and adapter), not 14 GB of frozen base;
- `save_pretrained(dir)` writes the LoRA adapter (when there is one) and the extension's files;
- `disable_adapter()` is the base model: hooks removed and LoRA disabled inside the block, as
  the before/after samples and the baseline comparisons expect of a peft model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys


class Extension(Protocol):
    """What SteeredModel needs of the module it hooks in (see alignment.models.mac.MacSteering)."""

    attached: bool

    def attach(self, model: nn.Module) -> Extension: ...

    def remove(self) -> None: ...

    def save(self, directory: Path) -> Path: ...


def _is_adapter_key(key: str) -> bool:
    return "lora_" in key


class SteeredModel(nn.Module):
    def __init__(self, model: nn.Module, extension: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.extension = extension
        extension.attach(model)

    # -- behaving like the wrapped model ---------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any):
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any):
        return self.model.generate(*args, **kwargs)

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- what is saved --------------------------------------------------------------------------
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The extension's state and the LoRA weights only (the frozen base is rebuilt)."""
        full = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        own = prefix + "extension."
        return type(full)(
            (k, v) for k, v in full.items() if k.startswith(own) or _is_adapter_key(k)
        )

    # Read by the Trainer after it loads a checkpoint (transformers models define it).
    _keys_to_ignore_on_save = None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load what state_dict() holds; missing/unexpected keys are counted against that, not
        against the frozen base (so a resumed checkpoint reports no missing keys)."""
        own = set(self.state_dict())
        missing, unexpected = sorted(own - set(state_dict)), sorted(set(state_dict) - own)
        if strict and (missing or unexpected):
            raise RuntimeError(f"SteeredModel state: missing {missing}, unexpected {unexpected}")
        mine = {k: v for k, v in state_dict.items() if k in own}
        super().load_state_dict(mine, strict=False, assign=assign)
        return _IncompatibleKeys(missing, unexpected)

    @property
    def active_adapter(self) -> str | None:
        """The LoRA adapter trained alongside, None without one (the pipeline saves only it)."""
        return getattr(self.model, "active_adapter", None) if self._has_lora() else None

    def _has_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        """The LoRA adapter (peft's save_pretrained, with `kwargs` such as selected_adapters)
        when there is one, then the extension's files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._has_lora():
            self.model.save_pretrained(str(directory), **kwargs)
        self.extension.save(directory)

    # -- the base model -------------------------------------------------------------------------
    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside the block the model is the base model: no hooks, LoRA (if any) disabled."""
        self.extension.remove()
        try:
            if hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    yield
            else:
                yield
        finally:
            self.extension.attach(self.model)
