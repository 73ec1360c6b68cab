"""From a DatasetConfig to tokenised train/validation sets, validated for the chosen method.

Tokenisation is cached on disk under `<cache_dir>/tokenized/`, keyed by a hash of everything it
depends on (the examples' content, the tokenizer, the template, the instruction handling), so the
runs of a sweep that share data tokenise it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from alignment import distributed
from alignment.config import RunConfig
from alignment.data.formatting import EncodedExample, encode_examples, filter_long, truncate_long
from alignment.data.quality import dedupe, name_rows, train_val_overlap
from alignment.data.sources import DATASETS, require_flags, split_train_val
from alignment.data.types import DataError, PreferenceExample
from alignment.methods import Method

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    train: Dataset
    val: Dataset | None
    counts: dict[str, float] = field(default_factory=dict)
    # Computes (or loads) reference log-probs for train and val given the policy; None when the
    # method needs no cached reference.
    reference: Callable | None = None

    def attach_reference(self, refs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        for split in ("train", "val"):
            ds = getattr(self, split)
            if ds is None:
                continue
            chosen, rejected = refs[split]
            ds = ds.add_column("ref_chosen_logps", chosen.tolist())
            setattr(self, split, ds.add_column("ref_rejected_logps", rejected.tolist()))


def validate_for_method(examples: list[PreferenceExample], method: Method, cfg: RunConfig) -> None:
    if method.needs_pairs:
        for ex in examples:
            if not ex.rejected.strip():
                raise DataError(
                    ex.origin or cfg.dataset.name,
                    None,
                    "rejected",
                    f"is empty; method {method.name} needs preference pairs",
                )
    if method.needs_flags(cfg.method):
        require_flags(examples, cfg.dataset.path or cfg.dataset.name)


def _encode_cached(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[PreferenceExample],
    cfg: RunConfig,
    method: Method,
) -> list[EncodedExample]:
    opts = {
        "instruction": method.uses_instruction(cfg.method),
        "system": cfg.model.supports_system_role,
    }
    digest = hashlib.sha256()
    digest.update(
        json.dumps([tokenizer.name_or_path, len(tokenizer), tokenizer.chat_template, opts]).encode()
    )
    for ex in examples:
        digest.update(json.dumps(asdict(ex), sort_keys=True).encode())
    path = Path(cfg.cache_dir).expanduser() / "tokenized" / f"{digest.hexdigest()[:24]}.pt"
    if path.is_file():
        log.info("tokenised data from cache %s", path)
        return [EncodedExample(**row) for row in torch.load(path)]
    encoded = encode_examples(
        tokenizer,
        examples,
        use_instruction=opts["instruction"],
        supports_system_role=opts["system"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save([asdict(e) for e in encoded], tmp)
    os.replace(tmp, path)  # atomic: concurrent jobs never read a partial file
    return encoded


def _to_dataset(encoded: list[EncodedExample], keep: list[int]) -> Dataset:
    rows = [encoded[i] for i in keep]
    return Dataset.from_dict(
        {
            "prompt_ids": [e.prompt_ids for e in rows],
            "chosen_ids": [e.chosen_ids for e in rows],
            "rejected_ids": [e.rejected_ids for e in rows],
            "h_w": [e.h_w for e in rows],
            "h_l": [e.h_l for e in rows],
            "length": [e.length for e in rows],
            "index": list(range(len(rows))),
        }
    )


def prepare_data(
    cfg: RunConfig, method: Method, tokenizer: PreTrainedTokenizerBase
) -> PreparedData:
    examples = DATASETS.get(cfg.dataset.name)(cfg.dataset)
    if not examples:
        raise DataError(cfg.dataset.path or cfg.dataset.name, None, None, "has no rows")
    validate_for_method(examples, method, cfg)
    counts: dict[str, float] = {}
    if method.transform is not None:
        examples, transformed = method.transform(cfg.method, examples)
        counts.update({f"data/{k}": float(v) for k, v in transformed.items()})
        log.info("%s data transform: %s", method.name, transformed)
    source = cfg.dataset.path or cfg.dataset.name
    examples, found = dedupe(examples, source, pairs=method.needs_pairs, remove=cfg.dataset.dedupe)
    counts.update(found)
    train_ex, val_ex = split_train_val(examples, cfg.dataset.val_fraction, cfg.dataset.split_seed)
    counts.update(train_val_overlap(train_ex, val_ex, source))
    splits = {}
    for name, exs in (("train", train_ex), ("val", val_ex)):
        if not exs:
            continue
        encoded = _encode_cached(tokenizer, exs, cfg, method)
        encoded, keep = _fit_length(encoded, exs, cfg, name, source, counts)
        dropped = len(encoded) - len(keep)
        counts[f"data/{name}_filtered_too_long"] = float(dropped)
        if dropped:
            kept = set(keep)
            rows = [ex.origin or f"{source}:?" for i, ex in enumerate(exs) if i not in kept]
            log.warning(
                "%s: dropped %d of %d %s rows longer than dataset.max_length=%d tokens: %s",
                source,
                dropped,
                len(encoded),
                name,
                cfg.dataset.max_length,
                name_rows(rows),
            )
        if keep:
            splits[name] = _to_dataset(encoded, keep)
            counts[f"data/{name}_examples"] = float(len(keep))
    if "train" not in splits:
        raise DataError(
            cfg.dataset.path or cfg.dataset.name,
            None,
            None,
            f"no training row fits dataset.max_length={cfg.dataset.max_length}",
        )
    data = PreparedData(splits["train"], splits.get("val"), counts)
    if method.needs_reference(cfg.method) and _use_cache(cfg, method, data):
        from alignment.refcache import reference_fn

        data.reference = reference_fn(cfg, data, tokenizer.pad_token_id)
    return data


def _fit_length(
    encoded: list[EncodedExample],
    exs: list[PreferenceExample],
    cfg: RunConfig,
    split: str,
    source: str,
    counts: dict[str, float],
) -> tuple[list[EncodedExample], list[int]]:
    """Apply dataset.too_long: the (possibly cut) rows and the indices of those kept."""
    if cfg.dataset.too_long == "drop":
        return encoded, filter_long(encoded, cfg.dataset.max_length)[0]
    long_rows = [ex.origin or f"{source}:?" for ex, e in zip(exs, encoded, strict=True)
                 if e.length > cfg.dataset.max_length]  # fmt: skip
    encoded, keep, cut = truncate_long(encoded, cfg.dataset.max_length)
    counts[f"data/{split}_truncated"] = float(cut)
    if cut:
        log.warning(
            "%s: cut %d %s rows to dataset.max_length=%d tokens: %s",
            source,
            cut,
            split,
            cfg.dataset.max_length,
            name_rows(long_rows),
        )
    return encoded, keep


def _use_cache(cfg: RunConfig, method: Method, data: PreparedData) -> bool:
    from alignment.refcache import data_splits, entry_path

    if method.needs_reference_logits(cfg.method) or cfg.train.reference == "online":
        return False  # full-vocabulary reference logits cannot be cached
    if cfg.train.reference == "cached" or entry_path(cfg, data_splits(data)).is_file():
        return True  # an entry another run of the grid computed is free to reuse
    t, n_train = cfg.train, len(data.train)
    per_step = t.batch_size * t.grad_accum * distributed.world_size()  # the global batch
    planned = t.max_steps * per_step if t.max_steps > 0 else t.epochs * n_train
    use = planned >= n_train
    log.info(
        "train.reference=auto: %s (the run sees %d of %d rows)",
        "cached" if use else "online",
        planned,
        n_train,
    )
    return use
