"""One collate function: stack [chosen; rejected] rows, right-pad, and mask labels.

A preference batch of B pairs becomes 2B rows (chosen rows first), so the policy runs a single
forward over both responses. SFT batches (no rejected response) have B rows.
"""

from __future__ import annotations

from typing import Any

import torch


def _pad(rows: list[list[int]], value: int, width: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class Collator:
    """Turns dataset rows into model inputs. Shapes (R = 2B rows for pairs, B for SFT, L = max):

    input_ids, attention_mask, labels (R, L); labels are -100 on prompt and padding.
    min_prompt_len (int), index (B,), h_w / h_l (B,) floats; ref_chosen_logps / ref_rejected_logps
    (B,) when the rows carry cached reference log-probs.
    """

    def __init__(self, pad_token_id: int, pairs: bool, pad_to_multiple_of: int = 1) -> None:
        self.pad_token_id, self.pairs, self.multiple = pad_token_id, pairs, pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [f["prompt_ids"] for f in features]
        responses = [f["chosen_ids"] for f in features]
        if self.pairs:
            prompts = prompts + prompts
            responses = responses + [f["rejected_ids"] for f in features]
        rows = [p + r for p, r in zip(prompts, responses, strict=True)]
        width = max(len(r) for r in rows)
        width = -(-width // self.multiple) * self.multiple
        input_ids = _pad(rows, self.pad_token_id, width)
        lengths = torch.tensor([len(r) for r in rows])
        prompt_len = torch.tensor([len(p) for p in prompts])
        positions = torch.arange(width).unsqueeze(0)
        attention_mask = (positions < lengths.unsqueeze(1)).long()
        response_mask = attention_mask.bool() & (positions >= prompt_len.unsqueeze(1))
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": input_ids.masked_fill(~response_mask, -100),
            # A plain int (the Trainer moves only tensors): no device sync to read it.
            "min_prompt_len": int(prompt_len.min()),
            "index": torch.tensor([f["index"] for f in features]),
            "h_w": torch.tensor([float(f["h_w"]) for f in features]),
            "h_l": torch.tensor([float(f["h_l"]) for f in features]),
        }
        if "ref_chosen_logps" in features[0]:
            batch["ref_chosen_logps"] = torch.tensor([f["ref_chosen_logps"] for f in features])
            batch["ref_rejected_logps"] = torch.tensor([f["ref_rejected_logps"] for f in features])
        return batch
