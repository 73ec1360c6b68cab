"""The canonical example type, and the error raised for bad input data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Turn(NamedTuple):
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class PreferenceExample:
    """One preference pair. `prompt` is the conversation before the response and ends with a user
    turn (a single turn for most data; earlier turns for multi-turn HH-RLHF dialogues).

    instruction: the alignment instruction I (CITA's system turn), if the data has one.
    rejected: "" for SFT-only data (no pair).
    h_w, h_l: hallucination flags of chosen/rejected (1 = non-factual), for Factual-DPO.
    origin: "file:row" of the raw record, for error messages.
    """

    prompt: tuple[Turn, ...]
    chosen: str
    rejected: str
    instruction: str | None = None
    h_w: int | None = None
    h_l: int | None = None
    category: str | None = None
    origin: str = ""


class DataError(ValueError):
    """Bad input data. The message is one line naming the file, the row and the field."""

    def __init__(self, source: str, row: int | None, field: str | None, problem: str) -> None:
        where = source if row is None else f"{source}:{row}"
        what = f" field {field!r}" if field else ""
        super().__init__(f"{where}:{what} {problem}".replace(": ", ": ", 1))
        self.source, self.row, self.field = source, row, field
