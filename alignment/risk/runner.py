"""Run-level pieces of the preflight: the training method's loss as the fine-tuning loss, the
first fine-tuning batches, the on-disk subspace cache and the sweep gate's verdict.

The subspace depends only on the base model, the selected parameters' starting values (so the
seed's LoRA initialisation), the safety pairs' token ids and the estimation settings. It is
stored once per such key under `<cache_dir>/risk/<key>.safetensors` (written atomically under a
file lock, as alignment/refcache.py stores reference log-probs) and reused by every run of a
grid that shares the key, by a resumed run, and by AlignGuard.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from alignment.data.collate import Collator
from alignment.forward import forward_logps
from alignment.losses import token_kl_full_vocab
from alignment.risk.gradients import LossFn
from alignment.risk.params import ParamSlice, Selection
from alignment.risk.safety import is_own_reference
from alignment.risk.subspace import SafetySubspace

log = logging.getLogger(__name__)
GATES = ("off", "warn", "skip")
_TENSORS = (
    "eigenvalues",
    "eigenvectors",
    "fisher_diagonal",
    "spectrum",
    "top_weight_indices",
    "top_weight_scores",
)


def method_loss(method, method_cfg, *, completion_only: bool = True) -> LossFn:
    """loss_fn(model, collated batch) -> the method's training loss, as the trainer computes it:
    policy log-probs, then reference log-probs (the batch's cached ones, the policy's own when the
    adapter is fresh, else an adapter-disabled forward), then the registered loss."""
    from alignment.methods import PolicyBatch

    def loss_fn(model, batch: dict) -> torch.Tensor:
        keep = method.needs_reference_logits(method_cfg)
        logps, n_tokens, logits = forward_logps(model, batch, completion_only, keep)
        b = batch["index"].shape[0]
        pb = PolicyBatch(policy_chosen_logps=logps[:b], chosen_tokens=n_tokens[:b])
        if method.needs_pairs:
            pb.policy_rejected_logps, pb.rejected_tokens = logps[b:], n_tokens[b:]
            pb.h_w, pb.h_l = batch["h_w"], batch["h_l"]
        # One batch, no accumulation window: its own token counts (the trainer's eval path).
        pb.chosen_tokens_total, pb.response_tokens_total = n_tokens[:b].sum(), n_tokens.sum()
        if method.needs_reference(method_cfg):
            ref, ref_logits = _reference(model, batch, logps, logits, completion_only)
            pb.ref_chosen_logps, pb.ref_rejected_logps = ref[:b], ref[b:]
            if logits is not None:
                labels = batch["labels"]
                pb.token_kl_sum = token_kl_full_vocab(logits, ref_logits, labels, "sum")
        return method.loss(method_cfg, pb).loss

    return loss_fn


def _reference(model, batch: dict, logps, logits, completion_only: bool):
    if "ref_chosen_logps" in batch and logits is None:
        return torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]]), None
    if is_own_reference(model):  # a fresh adapter adds exactly 0: the policy is the reference
        return logps.detach(), None if logits is None else logits.detach()
    with torch.no_grad(), model.disable_adapter():
        ref, _, ref_logits = forward_logps(model, batch, completion_only, logits is not None)
    return ref, ref_logits


def finetune_batches(
    ds: Dataset,
    pad_token_id: int,
    *,
    pairs: bool,
    batch_size: int,
    count: int,
    seed: int,
    device: torch.device,
) -> list[dict]:
    """`count` collated batches of a seeded sample of training rows: the first fine-tuning steps
    (the Trainer's own order depends on its sampler; any batch of the run is a fair stand-in)."""
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    collate = Collator(pad_token_id, pairs=pairs)
    out = []
    for start in range(0, min(len(order), batch_size * count), batch_size):
        batch = collate([ds[i] for i in order[start : start + batch_size]])
        out.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
    return out


def subspace_key(identity: list, selection: Selection, safety: Dataset, settings: dict) -> str:
    """A digest of everything the subspace depends on (see the module docstring)."""
    digest = hashlib.sha256(json.dumps(["risk-subspace-1", identity, settings]).encode())
    for s, p in zip(selection.slices, selection.params, strict=True):
        digest.update(json.dumps([s.name, list(s.shape)]).encode())
        digest.update(p.detach().float().cpu().numpy().tobytes())
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        digest.update(json.dumps(list(safety[column])).encode())
    return digest.hexdigest()[:32]


def cached_subspace(
    path: Path, compute: Callable[[], SafetySubspace]
) -> tuple[SafetySubspace, bool]:
    """(the subspace stored at `path`, or computed and stored there; whether it was a hit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second job of the grid waits here, then reuses
        if path.is_file():
            log.info("risk: safety subspace from cache %s", path)
            return _load(path), True
        subspace = compute()
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        meta = {
            "slices": [[s.name, s.start, s.end, list(s.shape)] for s in subspace.slices],
            "module_scores": subspace.module_scores,
            "samples": subspace.samples,
            "backend": subspace.backend,
        }
        tensors = {k: getattr(subspace, k).contiguous() for k in _TENSORS}
        save_file(tensors, tmp, metadata={"risk": json.dumps(meta)})
        os.replace(tmp, path)
        log.info("risk: safety subspace computed and cached at %s", path)
        return subspace, False


def _load(path: Path) -> SafetySubspace:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata()["risk"])
    tensors = load_file(str(path))
    slices = [ParamSlice(n, a, b, tuple(shape)) for n, a, b, shape in meta["slices"]]
    return SafetySubspace(
        slices=slices,
        module_scores=meta["module_scores"],
        samples=meta["samples"],
        backend=meta["backend"],
        **{k: tensors[k] for k in _TENSORS},
    )


def gate_verdict(collapse_step: int | None, planned_steps: int, gate: str) -> str:
    """'pass', 'warn' or 'skip': a forecast collapse within the run's planned steps trips the
    gate (`risk.gate=warn` logs it, `skip` ends the run before training)."""
    if gate not in GATES:
        raise ValueError(f"risk.gate must be one of {GATES}, got {gate!r}")
    if gate == "off" or collapse_step is None or collapse_step > planned_steps:
        return "pass"
    return gate
