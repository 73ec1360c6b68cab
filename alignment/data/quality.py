"""Data problems that do not stop a run but skew it: counted, warned about, named by row.

Repeated pairs (same prompt, instruction, chosen and rejected) weigh a pair twice and, split at
random, put the same pair in train and validation; a pair whose chosen equals its rejected has
a zero preference margin whatever the weights, so it only dilutes the loss. Both are counted
(`data/duplicate_rows`, `data/chosen_equals_rejected`, logged to MLflow with the other data
counts) and warned about with the first rows named; `dataset.dedupe=true` removes them before
the train/validation split. `data/train_val_overlap` counts validation rows whose pair is also
in train (0 whenever dedupe is on).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alignment.data.types import PreferenceExample

log = logging.getLogger(__name__)
SHOWN = 3  # rows named in a warning


def pair_key(ex: PreferenceExample) -> tuple:
    return (ex.prompt, ex.instruction, ex.chosen, ex.rejected)


def name_rows(origins: Sequence[str], shown: int = SHOWN) -> str:
    """`file:row, file:row, ... (n in all)`: the first few origins and the count."""
    head = ", ".join(origins[:shown])
    return head if len(origins) <= shown else f"{head}, ... ({len(origins)} in all)"


def dedupe(
    examples: list[PreferenceExample], source: str, *, pairs: bool, remove: bool
) -> tuple[list[PreferenceExample], dict[str, float]]:
    """Count (and with `remove` drop) repeated pairs and, for pair data, chosen == rejected.

    The first occurrence of a repeated pair is kept. Returns the examples and the counts."""
    seen: set[tuple] = set()
    repeated, same, kept = [], [], []
    for i, ex in enumerate(examples):
        key, where = pair_key(ex), ex.origin or f"{source}:{i + 1}"
        bad = True
        if key in seen:
            repeated.append(where)
        elif pairs and ex.chosen.strip() == ex.rejected.strip():
            same.append(where)
        else:
            bad = False
        seen.add(key)
        if not (bad and remove):
            kept.append(ex)
    if repeated or same:
        action = (
            "removed (dataset.dedupe=true)" if remove else "kept (dataset.dedupe=true removes them)"
        )
        problems = [
            f"{len(rows)} {what} ({name_rows(rows)})"
            for rows, what in (
                (repeated, "repeated pairs"),
                (same, "pairs with chosen == rejected"),
            )
            if rows
        ]
        log.warning("%s: %s; %s", source, "; ".join(problems), action)
    counts = {"data/duplicate_rows": float(len(repeated))}
    if pairs:
        counts["data/chosen_equals_rejected"] = float(len(same))
    return kept, counts


def train_val_overlap(
    train: list[PreferenceExample], val: list[PreferenceExample], source: str
) -> dict[str, float]:
    """Count validation rows whose pair is also a training row (warned about, never hidden)."""
    train_keys = {pair_key(ex) for ex in train}
    shared = [ex.origin or "?" for ex in val if pair_key(ex) in train_keys]
    if shared:
        log.warning(
            "%s: %d of %d validation rows are also training rows (%s); validation metrics are "
            "optimistic (dataset.dedupe=true prevents it)",
            source,
            len(shared),
            len(val),
            name_rows(shared),
        )
    return {"data/train_val_overlap": float(len(shared))}
