"""Schemas of the `model` config group: the base model, its quantisation and its LoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from alignment.config.checks import check

LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SOURCES = ("hub", "gguf", "tiny")
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "4bit", "8bit")


@dataclass
class LoraConfig:
    """LoRA adapter shape. Seed defaults: r=16, alpha=16 on the seven Llama projections."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_PROJECTIONS))

    def __post_init__(self) -> None:
        check("model.lora.r", self.r, ge=1)
        check("model.lora.alpha", self.alpha, gt=0)
        check("model.lora.dropout", self.dropout, ge=0, lt=1)
        if not self.target_modules:
            raise ValueError("model.lora.target_modules must name at least one module")


@dataclass
class ModelConfig:
    """A base model. `source` says where its weights come from.

    - `hub`: `hub_id` on the Hugging Face hub (or a local directory with the same layout).
    - `gguf`: a GGUF file shipped inside a Python package (`gguf_package`/`gguf_file`); it is
      dequantised once and cached as safetensors under `cache_dir`.
    - `tiny`: a few-thousand-parameter Llama built locally from `tiny_*` sizes, with a BPE tokenizer
      trained locally on the project's own data. For tests; it learns nothing useful.
    """

    name: str = MISSING
    source: str = "hub"
    hub_id: str | None = None
    revision: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    # Compute/storage dtype of the frozen base. CPU runs want float32 (bf16 matmuls are slow there).
    dtype: str = "float32"
    # NF4 double-quant with bf16 compute (`4bit`), LLM.int8 (`8bit`) or full precision (`none`).
    quantization: str = "none"
    # A template name from alignment/data/templates.py; null keeps the tokenizer's own template.
    chat_template: str | None = None
    # Gemma's templates reject a system role: the instruction then opens the first user turn.
    supports_system_role: bool = True
    attn_implementation: str | None = "sdpa"
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    # Start from a saved LoRA adapter instead of a fresh one: a directory (adapter_config.json
    # and the weights) or `run:<MLflow run id>` (that training run's adapter). The adapter is
    # trained further, and it is also pi_ref: the reference is the base with this adapter applied,
    # not the bare base (alignment/models/init_adapter.py). Its LoRA shape must equal `lora`.
    init_adapter: str | None = None
    tiny_hidden: int = 16
    tiny_layers: int = 2
    tiny_vocab: int = 320

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"model.source must be one of {SOURCES}, got {self.source!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"model.quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}"
            )
        if self.source == "hub" and not self.hub_id:
            raise ValueError(f"model {self.name!r}: source=hub needs model.hub_id")
        if self.source == "gguf" and not (self.gguf_package and self.gguf_file):
            raise ValueError(f"model {self.name!r}: source=gguf needs gguf_package and gguf_file")
        for key in ("tiny_hidden", "tiny_layers", "tiny_vocab"):
            check(f"model.{key}", getattr(self, key), ge=1)
        if self.init_adapter is not None:
            check_init_adapter(self.init_adapter)


RUN_PREFIX = "run:"


def check_init_adapter(value: str) -> None:
    """`run:<id>` must name an id (the run itself is looked up when the run starts, where the
    tracking store is known); a path must hold a saved adapter now, before anything is written."""
    key = f"model.init_adapter={value}"
    if value.startswith(RUN_PREFIX):
        run_id = value[len(RUN_PREFIX) :]
        if not run_id or not run_id.replace("-", "").isalnum():
            raise ValueError(f"{key}: expected run:<MLflow run id>")
        return
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"{key}: no such directory (give an adapter directory or run:<run id>)")
    if not (path / "adapter_config.json").is_file():
        raise ValueError(f"{key}: no adapter_config.json there (not a saved LoRA adapter)")
