"""Schemas of the `eval` config group (evaluate.py and eval_after_train)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    """Which evaluation suites run; an empty selection (`eval=none`) runs none."""
