"""Value checks for schema `__post_init__`s: one line naming the key, the rule and the value.

Every numeric hyperparameter goes through `check`, which also rejects NaN and infinities (YAML
and the command line accept `nan` and `inf` as floats), so a bad value fails when the config is
composed, not as a silent NaN loss hundreds of steps later.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def check(
    key: str,
    value: float | int | None,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> None:
    """Raise ValueError unless `value` is finite and within the given bounds (None passes)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value}")
    for op, bound in ((">", gt), (">=", ge), ("<", lt), ("<=", le)):
        if bound is not None and not _OPS[op](value, bound):
            raise ValueError(f"{key} must be {op} {bound}, got {value}")


def check_choice(key: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
