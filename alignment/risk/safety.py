"""The default safety loss: DPO on preference pairs, laid out one pair per sample.

A pair batch holds, for B pairs: input_ids and labels (B, 2, L) (chosen, rejected), min_prompt_len
(int) and, unless the policy is its own reference, ref_logps (B, 2) (the adapter-disabled model's
summed response log-probs). Slicing any sample range along dim 0 gives a valid pair batch, which
is what per-sample gradients need.

A freshly initialised LoRA adapter (every B factor zero) adds exactly 0 to every layer, so the
policy's log-probs equal the reference's bit for bit; the preflight runs before training, on such
an adapter, and then skips the reference forward: the loss uses the policy's own detached
log-probs as the reference (DPO at its starting point, loss log 2).

The forward passes no attention mask: rows are right-padded, so the causal mask alone already
hides every pad from every real token (pads only follow them) and the log-probs of the response
tokens are unchanged; without a padding mask the model's mask code has no data-dependent branch,
which lets torch.func.vmap trace it.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from alignment.data.collate import Collator
from alignment.losses import dpo_loss, sequence_logps
from alignment.risk.params import RiskInputError


def pair_logps(model, batch: dict) -> torch.Tensor:
    """Summed response log-probs (B, 2) of each pair's chosen and rejected rows."""
    length = batch["input_ids"].shape[-1]
    ids = batch["input_ids"].reshape(-1, 2, length)
    labels = batch["labels"].reshape(-1, 2, length)
    b = ids.shape[0]
    out = model(
        input_ids=ids.transpose(0, 1).reshape(2 * b, length),  # chosen rows, then rejected
        logits_to_keep=length - batch["min_prompt_len"] + 1,
        use_cache=False,
    )
    logps, _ = sequence_logps(out.logits, labels.transpose(0, 1).reshape(2 * b, length))
    return logps.view(2, b).T


def dpo_pair_loss(
    model, batch: dict, *, beta: float = 0.1, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean sigmoid-DPO loss of the pairs against ref_logps (alignment.losses.dpo_loss)."""
    logps = pair_logps(model, batch)
    ref = batch["ref_logps"].reshape(-1, 2) if "ref_logps" in batch else logps.detach()
    return dpo_loss(
        logps[:, 0],
        logps[:, 1],
        ref[:, 0],
        ref[:, 1],
        beta=beta,
        label_smoothing=label_smoothing,
    ).loss


def _pair_layout(collated: dict) -> dict:
    """Collator output ([chosen; rejected] rows, (2B, L)) -> the pair layout (B, 2, L)."""
    b = collated["index"].shape[0]
    return {
        "input_ids": collated["input_ids"].view(2, b, -1).transpose(0, 1).contiguous(),
        "labels": collated["labels"].view(2, b, -1).transpose(0, 1).contiguous(),
        "min_prompt_len": collated["min_prompt_len"],
    }


def is_own_reference(model: torch.nn.Module) -> bool:
    """True without adapters to disable, or when every LoRA B factor is exactly zero."""
    if not hasattr(model, "disable_adapter"):
        return True
    return all(
        not p.any() for n, p in model.named_parameters() if "lora_B" in n or "lora_embedding_B" in n
    )


@torch.no_grad()
def pair_batches(
    model: torch.nn.Module,
    ds: Dataset,
    pad_token_id: int,
    *,
    batch_size: int = 8,
    max_pairs: int = 128,
    source: str = "risk.safety",
) -> list[dict]:
    """The first `max_pairs` rows of a tokenised preference dataset as pair batches on the model's
    device, length-sorted (little padding), with reference log-probs from the model with its
    adapters disabled, unless the policy is its own reference (see `is_own_reference`)."""
    if len(ds) == 0:
        raise RiskInputError(f"{source}: the safety dataset has no preference pairs")
    device = next(model.parameters()).device
    collate = Collator(pad_token_id, pairs=True)
    rows = sorted(range(min(len(ds), max_pairs)), key=lambda i: ds[i]["length"])
    disable = None if is_own_reference(model) else model.disable_adapter
    was_training = model.training
    model.eval()
    batches = []
    try:
        for start in range(0, len(rows), batch_size):
            batch = _pair_layout(collate([ds[i] for i in rows[start : start + batch_size]]))
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            if disable is not None:
                with disable():
                    batch["ref_logps"] = pair_logps(model, batch).float()
            batches.append(batch)
    finally:
        model.train(was_training)
    return batches
