"""Answers of the evaluated model to evaluation prompts, batched and cached on disk.

Used by response-AQI and the judge tasks. A cache file is keyed by the weights' identity (given
by the caller: a run id, an adapter path, or the base model), the prompts and every decoding
setting, so a changed setting never reuses stale answers. Sampling (temperature > 0) is seeded
once per call, so answers are reproducible for the same batch layout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from alignment.config.eval import GenerationConfig

logger = logging.getLogger(__name__)


def chat_prompt(tokenizer, prompt: str, system: str | None, supports_system_role: bool) -> str:
    """The prompt as one user turn through the chat template, with the generation prompt.

    Templates without a system role (Mistral, Gemma) get the system text prepended to the user
    turn instead.
    """
    messages = [{"role": "user", "content": prompt}]
    if system and supports_system_role:
        messages.insert(0, {"role": "system", "content": system})
    elif system:
        messages[0]["content"] = f"{system}\n\n{prompt}"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def cache_file(
    cache_dir: str | Path, weights_key: str, prompts: Sequence[str], gen: GenerationConfig
) -> Path:
    """<cache_dir>/eval/generations/<sha256 of weights, prompts and decoding settings>.json"""
    blob = json.dumps([weights_key, list(prompts), vars(gen)], sort_keys=True, default=str)
    name = hashlib.sha256(blob.encode()).hexdigest()[:24]
    return Path(cache_dir).expanduser() / "eval" / "generations" / f"{name}.json"


@contextlib.contextmanager
def adapters_disabled(model) -> Iterator[None]:
    """The base model's behaviour: PEFT adapters off inside the block (no-op without adapters)."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield
    else:
        yield


@torch.no_grad()
def _generate(model, tokenizer, texts: list[str], gen: GenerationConfig) -> list[str]:
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[str] = [""] * len(texts)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    sample = gen.temperature > 0
    kwargs = {"temperature": gen.temperature, "top_p": gen.top_p} if sample else {}
    torch.manual_seed(gen.seed)
    try:
        for start in tqdm(range(0, len(order), gen.batch_size), desc="generating", leave=False):
            idx = order[start : start + gen.batch_size]
            batch = [texts[i] for i in idx]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(device)
            ids = model.generate(
                **enc,
                do_sample=sample,
                max_new_tokens=gen.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                use_cache=True,
                **kwargs,
            )
            new = tokenizer.batch_decode(
                ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
            )
            for i, text in zip(idx, new, strict=True):
                out[i] = text.strip()
    finally:
        tokenizer.padding_side = side
    return out


def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[str],
    gen: GenerationConfig,
    *,
    weights_key: str,
    cache_dir: str | Path,
    supports_system_role: bool = True,
) -> list[str]:
    """One answer per prompt (chat template, `gen` decoding), read from or written to the cache."""
    path = cache_file(cache_dir, weights_key, prompts, gen)
    if path.is_file():
        logger.info("answers from cache %s", path)
        return json.loads(path.read_text())["answers"]
    texts = [chat_prompt(tokenizer, p, gen.system_prompt, supports_system_role) for p in prompts]
    was_training = model.training
    model.eval()
    try:
        answers = _generate(model, tokenizer, texts, gen)
    finally:
        model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"weights": weights_key, "prompts": list(prompts), "answers": answers})
    )
    tmp.replace(path)  # atomic: a concurrent job never reads a half-written file
    return answers
