"""HH-RLHF-style dialogues -> turns, and a chosen/rejected pair -> (prompt, chosen, rejected).

The format is "\\n\\nHuman: ...\\n\\nAssistant: ..." with any number of turns; the response is
the last Assistant turn and the prompt is everything before it. Anthropic/hh-rlhf and the "Accepted
Response"/"Rejected Response" columns of Vaibhaav/alignment-instructions share it.

Quirks of the real data, and how they are handled:
- Leading whitespace, or a first "Human:" without the two newlines: accepted.
- "Human:" inside a turn without a preceding blank line (e.g. "...  Human: So she..."): text, not a
  new turn; only "\\n\\nHuman:" and "\\n\\nAssistant:" (or the very start) begin a turn.
- Two turns in a row from one speaker (12 dialogues in the first 2,000 harmless-base test rows):
  merged with a blank line, so the turns alternate as chat templates require.
- An empty last Assistant turn (4 of those rows), or a prompt that differs between the chosen and
  the rejected dialogue (none there once repeated speakers are merged): a `DialogueError` (a
  `DataError`) naming the row; dialogue loaders skip such rows and log them.
"""

from __future__ import annotations

import re

from alignment.data.types import DataError, Turn


class DialogueError(DataError):
    """A malformed dialogue. Loaders of dialogue data may skip such rows (and log them)."""


_MARKER = re.compile(r"(?:\A\s*|\n\n)(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_dialogue(
    text: str, *, source: str = "<dialogue>", row: int | None = None, field: str | None = None
) -> tuple[Turn, ...]:
    """Split a dialogue into alternating turns (role "user" or "assistant", content stripped).

    Raises:
        DialogueError: no turns, or text before the first turn marker.
    """
    parts = _MARKER.split(text)
    if len(parts) < 3:
        raise DialogueError(source, row, field, "no 'Human:'/'Assistant:' turns found")
    if parts[0].strip():
        raise DialogueError(source, row, field, f"text before the first turn: {parts[0][:40]!r}")
    turns: list[Turn] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role, content = _ROLES[speaker], content.strip()
        if turns and turns[-1].role == role:
            # Merge a repeated speaker so roles alternate; an empty piece adds nothing.
            merged = "\n\n".join(c for c in (turns[-1].content, content) if c)
            turns[-1] = Turn(role, merged)
        else:
            turns.append(Turn(role, content))
    return tuple(turns)


def split_dialogue(
    text: str, *, source: str = "<dialogue>", row: int | None = None, field: str | None = None
) -> tuple[tuple[Turn, ...], str]:
    """(prompt turns, response): the last Assistant turn is the response, all before it the prompt.

    The prompt is non-empty and ends with a user turn.

    Raises:
        DialogueError: the dialogue does not end with a non-empty Assistant turn, or has no
            Human turn before it.
    """
    turns = parse_dialogue(text, source=source, row=row, field=field)
    last = turns[-1]
    if last.role != "assistant":
        raise DialogueError(source, row, field, "dialogue does not end with an 'Assistant:' turn")
    if not last.content:
        raise DialogueError(source, row, field, "last 'Assistant:' turn is empty")
    prompt = turns[:-1]
    if not prompt:
        raise DialogueError(
            source, row, field, "no 'Human:' turn before the last 'Assistant:' turn"
        )
    return prompt, last.content


def split_pair(
    chosen: str,
    rejected: str,
    *,
    source: str = "<dialogue>",
    row: int | None = None,
    fields: tuple[str, str] = ("chosen", "rejected"),
) -> tuple[tuple[Turn, ...], str, str]:
    """(prompt, chosen response, rejected response) from two dialogues that share their prompt.

    Raises:
        DialogueError: either dialogue is malformed, or the prompts differ (the message names
            the first turn that differs).
    """
    prompt, chosen_response = split_dialogue(chosen, source=source, row=row, field=fields[0])
    other, rejected_response = split_dialogue(rejected, source=source, row=row, field=fields[1])
    if other != prompt:
        turn = next(
            (i for i, (a, b) in enumerate(zip(prompt, other, strict=False), 1) if a != b),
            min(len(prompt), len(other)) + 1,
        )
        problem = f"prompt differs from the {fields[0]!r} dialogue's prompt at turn {turn}"
        raise DialogueError(source, row, fields[1], problem)
    return prompt, chosen_response, rejected_response
