"""Schema of the `dataset` config group: which preference data, how it is read and split."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

PROMPT_SOURCES = ("first_human", "prompt_plus_instruction")
TOO_LONG = ("drop", "truncate")


@dataclass
class ColumnsConfig:
    """For `local`: the file's column name for each canonical field (null = the field's own name).

    `rejected: ""` declares SFT data without rejected responses. A misspelt field fails when the
    config is composed (`dataset.columns.promt=q`).
    """

    prompt: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    instruction: str | None = None
    h_w: str | None = None
    h_l: str | None = None
    category: str | None = None


@dataclass
class DatasetConfig:
    """A training dataset, selected by loader name (see alignment/data/sources.py).

    path: a hub dataset id, or a local .jsonl/.json/.csv file (for the `local` loader and for any
      loader whose hub dataset has been saved to disk).
    columns: for `local`, the file's column names of the canonical fields (ColumnsConfig), e.g.
      `dataset.columns.prompt=question`; unmapped fields use their canonical name.
    max_length: prompt + response tokens. too_long says what happens to a longer row: `drop` (the
      default: it is left out and counted, so no response is cut mid-sentence) or `truncate`
      (TRL 1.x's DPO/SFT rule, which the reference trainers used: each prompt + response keeps its
      first max_length tokens; a row whose prompt alone fills max_length is still dropped).
    split_seed: the train/validation split is fixed by this seed, independently of the run seed,
      so every cell of a grid sees the same split.
    """

    name: str = MISSING
    path: str | None = None
    data_dir: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    max_length: int = 256
    too_long: str = "drop"
    val_fraction: float = 0.1
    split_seed: int = 42
    max_examples: int | None = None
    # alignment-instructions only: where the user turn X comes from (see spec/cita.md section 3).
    prompt_source: str = "first_human"

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"dataset.max_length must be >= 8, got {self.max_length}")
        if self.too_long not in TOO_LONG:
            raise ValueError(f"dataset.too_long must be one of {TOO_LONG}, got {self.too_long!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"dataset.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.prompt_source not in PROMPT_SOURCES:
            raise ValueError(
                f"dataset.prompt_source must be one of {PROMPT_SOURCES}, got {self.prompt_source!r}"
            )
