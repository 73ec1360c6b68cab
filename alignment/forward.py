"""The model forward that yields sequence log-probs, shared by training, the reference cache,
evaluation and the benchmarks."""

from __future__ import annotations

import torch

from alignment.losses import sequence_logps


def logits_to_keep(batch: dict, completion_only: bool) -> int:
    """How many final positions need logits: from the shortest prompt's last token onwards.

    Prompt positions before that never predict a response token, so projecting them through the
    LM head (the most expensive matmul of a small model) would be wasted work. 0 keeps all.
    """
    if not completion_only:
        return 0
    return batch["input_ids"].shape[1] - batch["min_prompt_len"] + 1


def forward_logps(
    model: torch.nn.Module, batch: dict, completion_only: bool = True, keep_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Summed response log-probs (R,), response token counts (R,) and optionally the logits."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=logits_to_keep(batch, completion_only),
        use_cache=False,
    )
    logps, n_tokens = sequence_logps(out.logits, batch["labels"])
    return logps, n_tokens, (out.logits if keep_logits else None)
