"""Schema of the `dataset` config group: which preference data, how it is read and split."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from alignment.config.checks import check, check_choice

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
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    max_length: int = 256
    too_long: str = "drop"
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
        check_choice("dataset.too_long", self.too_long, TOO_LONG)
