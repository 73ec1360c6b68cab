"""Prompt injection for the stage-1 experts: an axis-specific prefix, the reference's
chain-of-thought prefix, both, or none (`alignx.prefix`).

The prefix opens the last user turn, so a chat template renders it inside the user message.
"""

from __future__ import annotations

from dataclasses import replace

from alignment.data.types import PreferenceExample, Turn

AXIS_PREFIXES = {"helpfulness": "[HELPFUL]", "harmlessness": "[HARMLESS]", "honesty": "[HONEST]"}
# What the reference's Finetune_Pipeline.py prepends to its "injection" prompts.
COT_PREFIX = "Chain of Thought: Let's think step by step."
PREFIX_STYLES = ("axis", "cot", "axis_cot", "none")


def expert_prefix(axis: str, style: str) -> str:
    """The text injected before an `axis` expert's prompts for prefix style `style`."""
    if style not in PREFIX_STYLES:
        raise ValueError(f"alignx.prefix must be one of {PREFIX_STYLES}, got {style!r}")
    if axis not in AXIS_PREFIXES:
        raise ValueError(f"unknown axis {axis!r}; axes are {list(AXIS_PREFIXES)}")
    parts = {
        "axis": [AXIS_PREFIXES[axis]],
        "cot": [COT_PREFIX],
        "axis_cot": [AXIS_PREFIXES[axis], COT_PREFIX],
        "none": [],
    }[style]
    return " ".join(parts)


def inject(example: PreferenceExample, prefix: str) -> PreferenceExample:
    """The example with `prefix` (and a space) opening its last user turn; unchanged if empty."""
    if not prefix:
        return example
    turns = list(example.prompt)
    last = max(i for i, t in enumerate(turns) if t.role == "user")
    turns[last] = Turn("user", f"{prefix} {turns[last].content}")
    return replace(example, prompt=tuple(turns))
