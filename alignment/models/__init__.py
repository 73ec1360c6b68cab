"""Build the policy: base model (optionally 4-/8-bit via bitsandbytes) + LoRA, and its tokenizer.

The reference model for DPO-family losses is this same model with its adapters disabled (or,
for a run that starts from a saved adapter, with a frozen copy of that adapter active:
alignment/models/reference.py), so no second copy of the base weights is ever loaded.
"""

from __future__ import annotations

import logging
import warnings

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from alignment.config import ModelConfig
from alignment.data.templates import TEMPLATES
from alignment.models.reference import attach_init_adapter
from alignment.models.weights import weights_dir

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def load_tokenizer(cfg: ModelConfig, cache_dir: str) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(weights_dir(cfg, cache_dir), revision=cfg.revision)
    if cfg.chat_template is not None:
        tok.chat_template = TEMPLATES.get(cfg.chat_template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def _quantization(cfg: ModelConfig, fsdp: bool = False):
    if cfg.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    # FSDP shards only float tensors: peft's FSDP-QLoRA recipe packs the 4-bit weights into the
    # model's float dtype (bnb_4bit_quant_storage) so they shard like every other weight.
    storage = {"bnb_4bit_quant_storage": DTYPES[cfg.dtype]} if fsdp else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        **storage,
    )


def load_base(
    cfg: ModelConfig, cache_dir: str, device: torch.device, fsdp: bool = False
) -> torch.nn.Module:
    """The frozen base model on `device` (quantised if configured; `fsdp`: to be sharded)."""
    quant = _quantization(cfg, fsdp)
    kwargs = {"dtype": DTYPES[cfg.dtype], "revision": cfg.revision}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(weights_dir(cfg, cache_dir), **kwargs)
    if quant is None:
        model.to(device)
    model.config.use_cache = False
    return model


def peft_lora_config(lora) -> PeftLoraConfig:
    """peft's LoraConfig for the schema's `model.lora` (r, alpha, dropout, target modules)."""
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_policy(
    cfg: ModelConfig,
    cache_dir: str,
    device: torch.device,
    adapter_path: str | None = None,
    trainable: bool = True,
    fsdp: bool = False,
) -> PeftModel:
    """Base model + LoRA adapter: the one saved at `adapter_path`, else `cfg.init_adapter` (a
    resolved directory; trained further, with its frozen copy as pi_ref: models/reference.py),
    else a new one from `cfg.lora`."""
    model = load_base(cfg, cache_dir, device, fsdp)
    if cfg.quantization != "none" and trainable:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing
        )
    elif cfg.gradient_checkpointing and trainable:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if adapter_path is not None:
        return PeftModel.from_pretrained(model, adapter_path, is_trainable=trainable)
    if cfg.init_adapter is not None:
        if cfg.init_adapter.startswith("run:"):
            raise ValueError("model.init_adapter=run:<id> must be resolved first (init_adapter.py)")
        return attach_init_adapter(model, cfg.init_adapter, trainable)
    lora = peft_lora_config(cfg.lora)
    with warnings.catch_warnings():
        # peft 0.21 reads `is_gradient_checkpointing`, which transformers 5 deprecated: a notice
        # about library internals that every run would print, with nothing for a user to do.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        policy = get_peft_model(model, lora)
    n_train = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in policy.parameters())
    log.info("model %s: %d trainable of %d parameters", cfg.name, n_train, n_all)
    return policy
