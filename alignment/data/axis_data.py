"""Round-robin axis data for MAC and AlignX: one batch of each axis in every training step.

Each axis source (a `DatasetConfig` naming a loader, see alignment/data/axes.py) is loaded,
split, tokenised and length-fitted (dataset.dedupe and dataset.too_long apply per axis, counted
as `data/<axis>/...`) like any training set. Item i of the combined dataset holds
row i of every axis, so a batch of b items carries b rows of each axis: the Trainer's sampler,
length grouping, checkpointing and resume all work unchanged, and `AxisCollator` flattens the
items into A*b rows with an `axis` index per row (one padded forward instead of A).

length: `shortest` stops at the smallest axis (the reference zips its loaders), so the larger
axes only ever show their first rows after the fixed shuffle of the split; `longest` cycles the
smaller axes so every row of every axis is seen each epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from alignment.axes import AXES
from alignment.config import DatasetConfig, RunConfig
from alignment.config.axes import AxisDataConfig
from alignment.data.axes import DEFAULT_SPLITS
from alignment.data.collate import Collator
from alignment.data.formatting import EncodedExample
from alignment.data.prepare import PreparedData, encode_cached, fit_length
from alignment.data.quality import dedupe
from alignment.data.sources import DATASETS, split_train_val
from alignment.data.types import DataError, PreferenceExample

log = logging.getLogger(__name__)

LENGTHS = ("shortest", "longest")
# (axis index, examples) -> examples: e.g. AlignX's per-axis prefix injection.
AxisTransform = Callable[[int, list[PreferenceExample]], list[PreferenceExample]]


def round_robin(encoded: list[list[EncodedExample]], length: str = "shortest") -> Dataset:
    """Item i = row i (mod the axis size) of every axis; `length` picks the item count."""
    if length not in LENGTHS:
        raise ValueError(f"method.round_robin must be one of {LENGTHS}, got {length!r}")
    sizes = [len(rows) for rows in encoded]
    n = min(sizes) if length == "shortest" else max(sizes)
    items = [[rows[i % len(rows)] for rows in encoded] for i in range(n)]
    return Dataset.from_dict(
        {
            "prompt_ids": [[e.prompt_ids for e in item] for item in items],
            "chosen_ids": [[e.chosen_ids for e in item] for item in items],
            "length": [max(e.length for e in item) for item in items],
            "index": list(range(n)),
        }
    )


class AxisCollator:
    """b items -> the `Collator` batch of their A*b rows (axis-major) plus `axis` (A*b,) and
    `n_axes` (int)."""

    def __init__(self, pad_token_id: int) -> None:
        self.inner = Collator(pad_token_id, pairs=False)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        n_axes = len(features[0]["prompt_ids"])
        rows, axis = [], []
        for a in range(n_axes):
            for f in features:
                rows.append(
                    {
                        "prompt_ids": f["prompt_ids"][a],
                        "chosen_ids": f["chosen_ids"][a],
                        "rejected_ids": [],
                        "index": f["index"] * n_axes + a,
                        "h_w": 0,
                        "h_l": 0,
                    }
                )
                axis.append(a)
        batch = self.inner(rows)
        batch["axis"] = torch.tensor(axis)
        batch["n_axes"] = n_axes  # a plain int (the Trainer moves only tensors)
        return batch


def _load_axis(source: DatasetConfig, axis: str) -> list[PreferenceExample]:
    examples = DATASETS.get(source.name)(source)
    if not examples:
        raise DataError(source.path or source.name, None, None, f"axis {axis}: no rows")
    return examples


def prepare_axis_data(
    cfg: RunConfig,
    sources: dict[str, DatasetConfig],
    tokenizer: PreTrainedTokenizerBase,
    method,
    length: str = "shortest",
    transform: AxisTransform | None = None,
) -> PreparedData:
    """Load, split, tokenise and filter each axis, then interleave them round-robin.

    Splits use cfg.dataset's val_fraction and split_seed; rows longer than cfg.dataset.max_length
    are dropped and counted per axis (`data/<axis>/...`).
    """
    encoded: dict[str, list[list[EncodedExample]]] = {"train": [], "val": []}
    counts: dict[str, float] = {}
    for a, (axis, source) in enumerate(sources.items()):
        examples = _load_axis(source, axis)
        if transform is not None:
            examples = transform(a, examples)
        where = source.path or source.name
        # dataset.dedupe and dataset.too_long apply per axis, counted as data/<axis>/...
        examples, found = dedupe(examples, where, pairs=False, remove=cfg.dataset.dedupe)
        counts.update({k.replace("data/", f"data/{axis}/", 1): v for k, v in found.items()})
        train, val = split_train_val(examples, cfg.dataset.val_fraction, cfg.dataset.split_seed)
        for split, rows in (("train", train), ("val", val)):
            enc = encode_cached(tokenizer, rows, cfg, method) if rows else []
            enc, keep = fit_length(enc, rows, cfg, f"{axis}/{split}", where, counts)
            dropped = len(enc) - len(keep)
            counts[f"data/{axis}/{split}_examples"] = float(len(keep))
            counts[f"data/{axis}/{split}_filtered_too_long"] = float(dropped)
            if dropped:
                limit = cfg.dataset.max_length
                log.warning(
                    "axis %s: dropped %d %s rows over %d tokens", axis, dropped, split, limit
                )
            encoded[split].append([enc[i] for i in keep])
    for axis, rows in zip(sources, encoded["train"], strict=True):
        if not rows:
            where = sources[axis].path or sources[axis].name
            problem = f"axis {axis}: no training row fits dataset.max_length"
            raise DataError(where, None, None, f"{problem}={cfg.dataset.max_length}")
    train = round_robin(encoded["train"], length)
    val = round_robin(encoded["val"], length) if all(encoded["val"]) else None
    counts["data/train_examples"] = float(len(train))
    counts["data/val_examples"] = float(len(val)) if val is not None else 0.0
    return PreparedData(train, val, counts, collator=AxisCollator(tokenizer.pad_token_id))


def axis_source(
    base: DatasetConfig,
    name: str,
    path: str | None = None,
    split: str | None = None,
    max_examples: int | None = None,
) -> DatasetConfig:
    """A DatasetConfig for one axis: the run's dataset settings (max_length, split seed, ...)
    with this loader, path and split (None: the loader's default, see DEFAULT_SPLITS)."""
    split = split or DEFAULT_SPLITS.get(name, "train")
    kw = {"path": path, "split": split, "max_examples": max_examples}
    return replace(base, name=name, columns={}, data_dir=None, **kw)


def axis_sources(base: DatasetConfig, data: AxisDataConfig) -> dict[str, DatasetConfig]:
    """{axis: DatasetConfig} for every axis of a `method.data` block, in AXES order."""
    out = {}
    for axis in AXES:
        src = getattr(data, axis)
        out[axis] = axis_source(base, data.loader(axis), src.path, src.split, src.max_examples)
    return out
