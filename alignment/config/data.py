"""Schema of the `dataset` config group: which preference data, how it is read and split."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from alignment.config.checks import check, check_choice

PROMPT_SOURCES = ("first_human", "prompt_plus_instruction")


@dataclass
class DatasetConfig:
    """A training dataset, selected by loader name (see alignment/data/sources.py).

    path: a hub dataset id, or a local .jsonl/.json/.csv file (for the `local` loader and for any
      loader whose hub dataset has been saved to disk).
    columns: for `local`, maps canonical fields (prompt, chosen, rejected, instruction, h_w, h_l)
      to the file's column names; unmapped fields use their canonical name.
    max_length: prompt + response tokens. Longer rows are dropped (the count is logged), never cut.
    split_seed: the train/validation split is fixed by this seed, independently of the run seed,
      so every cell of a grid sees the same split.
    dedupe: drop repeated pairs (same prompt, instruction, chosen and rejected; the first is
      kept) and pairs whose chosen equals their rejected, before the split, so no pair sits in
      both train and validation. Off, they are only counted (data/duplicate_rows,
      data/chosen_equals_rejected, data/train_val_overlap) and warned about.
    """

    name: str = MISSING
    path: str | None = None
    data_dir: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    max_length: int = 256
    val_fraction: float = 0.1
    split_seed: int = 42
    max_examples: int | None = None
    # alignment-instructions only: where the user turn X comes from (see spec/cita.md section 3).
    prompt_source: str = "first_human"
    dedupe: bool = False

    def __post_init__(self) -> None:
        check("dataset.max_length", self.max_length, ge=8)
        check("dataset.val_fraction", self.val_fraction, ge=0, lt=1)
        check("dataset.split_seed", self.split_seed, ge=0)
        check("dataset.max_examples", self.max_examples, ge=1)
        check_choice("dataset.prompt_source", self.prompt_source, PROMPT_SOURCES)
