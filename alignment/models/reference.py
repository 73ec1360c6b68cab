"""pi_ref inside the policy: the adapter-disabled base, or a frozen copy of the init adapter.

A run that starts from a saved adapter (`model.init_adapter`, e.g. the previous stage of a
stacked run) trains that adapter further, and its reference is the model the adapter defines:
the base with the init adapter applied, not the bare base. `attach_init_adapter` loads the
adapter twice onto the one base model: as the trainable adapter (peft's "default", the one
training updates and `save_pretrained` writes) and as a frozen copy named `REFERENCE_ADAPTER`,
which `reference_mode` activates for the reference pass.

Why two adapters and not the init adapter merged into the base weights plus a fresh LoRA:
- exactness on quantised bases: merging into a 4-bit (NF4) or 8-bit base dequantises, adds and
  re-quantises, so the merged "reference" is the init policy plus rounding noise, and each
  stage of a chain would compound it; the frozen copy leaves the quantised weights untouched
  and pi_ref is the init policy exactly (peft supports several LoRA adapters on bitsandbytes
  layers);
- a self-contained result: the trained adapter is a complete policy on the plain base, like
  any run's, so evaluate.py (base + adapter) and the next stage load it without the chain; a
  fresh LoRA on a merged base would be a delta on weights that exist nowhere else;
- "training starts from that adapter": the trainable adapter is the init adapter itself (same
  shape and weights), not a zero delta of another shape.
The cost is a second set of LoRA weights (well under 1% of the base) and nothing per step: the
reference pass is one forward either way.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

REFERENCE_ADAPTER = "reference"


def attach_init_adapter(base: torch.nn.Module, path: str, trainable: bool = True) -> PeftModel:
    """`base` + the adapter saved at `path`, trainable, plus its frozen copy for pi_ref."""
    with warnings.catch_warnings():  # as in load_policy: a notice about library internals
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        policy = PeftModel.from_pretrained(base, path, is_trainable=trainable)
        policy.load_adapter(path, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    for module in policy.modules():
        # The reference pass runs in train mode (as the training step around it): LoRA dropout
        # on the reference adapter would make pi_ref random. Dropout 0 is peft's Identity too.
        if isinstance(module, LoraLayer) and REFERENCE_ADAPTER in module.lora_dropout:
            module.lora_dropout[REFERENCE_ADAPTER] = torch.nn.Identity()
    policy.peft_config[REFERENCE_ADAPTER].lora_dropout = 0.0
    policy.set_adapter("default", inference_mode=not trainable)
    return policy


def has_reference_adapter(model: torch.nn.Module) -> bool:
    return REFERENCE_ADAPTER in getattr(model, "peft_config", {})


@contextlib.contextmanager
def reference_mode(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block `model` computes pi_ref: the frozen init adapter when the run started
    from one, else the base with every adapter disabled (no second copy of the weights).

    peft's set_adapter also sets requires_grad (the active adapter trainable unless
    inference_mode), so leaving the block restores the trainable adapter as it was; the block
    runs under no_grad, where requires_grad changes nothing."""
    if not has_reference_adapter(model):
        with model.disable_adapter():
            yield
        return
    active = model.active_adapter
    frozen = model.peft_config[active].inference_mode
    model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(active, inference_mode=frozen)
