"""The shared reference log-prob cache.

Reference log-probs depend only on the reference model (the base's weights, quantisation and
dtype, plus the init adapter's fingerprint when the run starts from one: then pi_ref is that
adapter's policy), the token ids of each row (dataset content, template, max_length filtering
all show up there) and nothing the method, optimizer or Delta changes. They are computed once
per key as pi_ref (alignment/models/reference.py), stored as safetensors under
`<cache_dir>/refcache/<key>.safetensors`, and reused by every run of a grid that shares the
key. A file lock serialises concurrent writers: a second job waits for the first and then reads
its file.

With N ranks the entry is still computed once: rank 0 alone takes the lock and decides hit or
miss; on a miss each rank computes every N-th row (by length, so the shares cost alike) and a
sum over ranks assembles the whole, which rank 0 writes; on a hit rank 0 reads the file and
sends it to the others. No other rank touches the file, so nodes need not share the cache dir.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from alignment import distributed
from alignment.config import RunConfig
from alignment.data.collate import Collator
from alignment.forward import forward_logps
from alignment.init_adapter import adapter_fingerprint
from alignment.models.reference import reference_mode

log = logging.getLogger(__name__)

# Incremented per computed batch; tests and benchmarks read it to count reference passes.
REFERENCE_BATCHES = {"computed": 0, "hits": 0, "misses": 0}


def cache_key(cfg: RunConfig, splits: dict[str, Dataset]) -> str:
    m = cfg.model
    digest = hashlib.sha256()
    identity = [
        m.source,
        m.hub_id,
        m.revision,
        m.gguf_file,
        m.tiny_hidden,
        m.tiny_layers,
        m.tiny_vocab,
        m.dtype,
        m.quantization,
        m.attn_implementation,
    ]
    if m.init_adapter is not None:  # a resolved directory (alignment/init_adapter.py)
        identity.append(["init_adapter", adapter_fingerprint(m.init_adapter)])
    digest.update(json.dumps(["pairs-canonical", *identity]).encode())
    for name in sorted(splits):
        ds = splits[name]
        digest.update(name.encode())
        swap = swapped(ds)
        pairs = list(zip(ds["chosen_ids"], ds["rejected_ids"], swap.tolist(), strict=True))
        first = [r if s else c for c, r, s in pairs]
        second = [c if s else r for c, r, s in pairs]
        for rows in (list(ds["prompt_ids"]), first, second):
            digest.update(json.dumps(rows).encode())
    return digest.hexdigest()[:32]


def swapped(ds: Dataset) -> torch.Tensor:
    """Rows whose pair the cache stores the other way round. An entry keeps each pair in a
    canonical order (the smaller token list first), so a run that swaps chosen and rejected
    (Factual-DPO's flip of (1, 0) pairs) shares the entry of a run that does not (DPO)."""
    pairs = zip(ds["chosen_ids"], ds["rejected_ids"], strict=True)
    return torch.tensor([c > r for c, r in pairs], dtype=torch.bool)


@torch.no_grad()
def compute_reference(
    model, ds: Dataset, pad_token_id: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) reference log-probs (N,) for every row, computed as pi_ref. With several
    ranks each computes every N-th row and a sum over ranks fills in the others' rows."""
    collate = Collator(pad_token_id, pairs=True)
    order = sorted(range(len(ds)), key=lambda i: ds[i]["length"])  # little padding per batch
    order = order[distributed.rank() :: distributed.world_size()]
    chosen, rejected = torch.zeros(len(ds)), torch.zeros(len(ds))
    device = next(model.parameters()).device
    # Train mode, as in the training steps that would otherwise compute these values: as pi_ref
    # nothing stochastic runs (the supported base models have no dropout, and the frozen init
    # adapter has none), and
    # eval mode would make bitsandbytes repack 4-bit weights on CPU into an inference-only layout.
    was_training = model.training
    model.train()
    with reference_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = {
                k: v.to(device) if torch.is_tensor(v) else v
                for k, v in collate([ds[i] for i in idx]).items()
            }
            logps, _, _ = forward_logps(model, batch)
            chosen[idx] = logps[: len(idx)].float().cpu()
            rejected[idx] = logps[len(idx) :].float().cpu()
            REFERENCE_BATCHES["computed"] += 1
    model.train(was_training)
    return distributed.all_reduce_sum(chosen), distributed.all_reduce_sum(rejected)


def data_splits(data) -> dict[str, Dataset]:
    return {"train": data.train} | ({"val": data.val} if data.val is not None else {})


def entry_path(cfg: RunConfig, splits: dict[str, Dataset]) -> Path:
    """Where the cache entry for this model and these token ids lives (it may not exist yet)."""
    return Path(cfg.cache_dir).expanduser() / "refcache" / f"{cache_key(cfg, splits)}.safetensors"


def reference_fn(cfg: RunConfig, data, pad_token_id: int):
    """A function model -> {split: (chosen, rejected)} that loads or computes the cache entry."""
    splits = data_splits(data)
    path = entry_path(cfg, splits)
    key = path.stem

    def load_or_compute(model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        main = distributed.is_main()
        if main:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") if main else nullcontext() as lock:
            if main:
                fcntl.flock(lock, fcntl.LOCK_EX)  # a second writer waits here, then reuses
            if distributed.broadcast(path.is_file() if main else None):
                REFERENCE_BATCHES["hits"] += 1
                data.counts["refcache/hit"] = 1.0
                log.info("reference log-probs from cache %s", path)
                tensors = distributed.broadcast(load_file(str(path)) if main else None)
            else:
                REFERENCE_BATCHES["misses"] += 1
                data.counts["refcache/hit"] = 0.0
                tensors = _compute(model, splits, pad_token_id, cfg.train.batch_size * 2)
                if main:
                    _write(tensors, path, key)
        out = {}
        for name, ds in splits.items():
            first, second, swap = tensors[f"{name}.first"], tensors[f"{name}.second"], swapped(ds)
            out[name] = (torch.where(swap, second, first), torch.where(swap, first, second))
        return out

    return load_or_compute


def _compute(model, splits: dict[str, Dataset], pad_token_id: int, batch_size: int):
    tensors = {}
    for name, ds in splits.items():
        c, r = compute_reference(model, ds, pad_token_id, batch_size)
        swap = swapped(ds)
        tensors[f"{name}.first"] = torch.where(swap, r, c)
        tensors[f"{name}.second"] = torch.where(swap, c, r)
    return tensors


def _write(tensors: dict[str, torch.Tensor], path: Path, key: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp, metadata={"key": key})
    os.replace(tmp, path)  # atomic: a concurrent reader never sees a partial file
    log.info("reference log-probs computed and cached at %s", path)
