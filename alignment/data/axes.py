"""The three alignment axes of MAC and AlignX, and supervised (prompt -> answer) data for each.

Both methods train on one dataset per axis. The reference code uses hub data (`HUB_AXIS_DATA`,
`method.data.preset=hub`); the offline defaults (`BUILTIN_AXIS_DATA`) are the project's own files:

- helpfulness: `helpful_builtin`, the benign how-to questions of assets/safety_prefs.jsonl with
  their helpful answers (the chosen side of the benign pairs);
- harmlessness: `harmless_builtin`, the harmful requests of the same file with their chosen
  answers: a refusal that says why and offers a safe alternative;
- honesty: `honest_builtin`, assets/honesty_sft.jsonl (alignment/data/honesty.py): saying what
  cannot be known or done, and correcting false premises.

The loaders register in `DATASETS`, so any of them also works as `dataset=<name>` for SFT, and
every `DatasetConfig` field (path, max_examples, ...) applies. Each yields SFT examples
(rejected = "").
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import Any

from alignment.config.axes import PRESETS
from alignment.config.data import DatasetConfig
from alignment.data.builtin import SAFETY_PREFS_PATH
from alignment.data.honesty import HONESTY_PATH
from alignment.data.readers import column, load_records, parse_flag, text_field
from alignment.data.sources import DATASETS, SAME_NAMES, _flat, _load
from alignment.data.types import DataError, PreferenceExample, Turn

logger = logging.getLogger(__name__)

BUILTIN_AXIS_DATA, HUB_AXIS_DATA = PRESETS["builtin"], PRESETS["hub"]
# The split a loader reads when the axis config leaves it unset (hub datasets name theirs).
DEFAULT_SPLITS = {"beavertails_safe": "30k_train", "truthfulqa_answers": "validation"}


def _safety_sft(cfg: DatasetConfig, benign: bool) -> list[PreferenceExample]:
    parse = partial(_flat, names=SAME_NAMES, sft=True)
    examples = _load(cfg, str(SAFETY_PREFS_PATH), parse)
    kept = [ex for ex in examples if (ex.category == "benign") == benign]
    if not kept:
        where = cfg.path or str(SAFETY_PREFS_PATH)
        kind = "category 'benign'" if benign else "a category other than 'benign'"
        raise DataError(where, None, "category", f"no row has {kind}")
    return kept


@DATASETS.register("helpful_builtin")
def load_helpful_builtin(cfg: DatasetConfig) -> list[PreferenceExample]:
    """Benign rows (category 'benign') of safety_prefs.jsonl: prompt -> helpful chosen answer."""
    return _safety_sft(cfg, benign=True)


@DATASETS.register("harmless_builtin")
def load_harmless_builtin(cfg: DatasetConfig) -> list[PreferenceExample]:
    """Harmful rows of safety_prefs.jsonl: prompt -> the chosen refusal with a safe alternative."""
    return _safety_sft(cfg, benign=False)


@DATASETS.register("honest_builtin")
def load_honest_builtin(cfg: DatasetConfig) -> list[PreferenceExample]:
    """honesty_sft.jsonl (or any file with prompt, chosen[, category]): prompt -> honest answer."""
    return _load(cfg, str(HONESTY_PATH), partial(_flat, names=SAME_NAMES, sft=True))


def _beavertails_row(
    row: dict[str, Any], source: str, line: int, cfg: DatasetConfig
) -> PreferenceExample:
    prompt = text_field(row, "prompt", source, line).strip()
    response = text_field(row, "response", source, line).strip()
    safe = parse_flag(column(row, "is_safe", source, line), source, line, "is_safe")
    if safe is None:
        raise DataError(source, line, "is_safe", "is empty")
    category = "safe" if safe else "unsafe"
    origin = f"{source}:{line}"
    return PreferenceExample(
        (Turn("user", prompt),), response, "", category=category, origin=origin
    )


@DATASETS.register("hhh_builtin")
def load_hhh_builtin(cfg: DatasetConfig) -> list[PreferenceExample]:
    """The three offline axes in one SFT set (an SFT baseline on MAC's data; `cfg.path` unused)."""
    if cfg.path:
        raise ValueError("dataset.path is not used by hhh_builtin (it reads three shipped files)")
    parts = [DATASETS.get(name)(replace(cfg, name=name)) for name in BUILTIN_AXIS_DATA.values()]
    return [ex for part in parts for ex in part]


@DATASETS.register("beavertails_safe")
def load_beavertails_safe(cfg: DatasetConfig) -> list[PreferenceExample]:
    """PKU-Alignment/BeaverTails rows with is_safe true (the reference's harmlessness data):
    prompt -> response. Unsafe rows are dropped and counted in the log. Use
    split 30k_train unless the axis config names another."""
    examples = _load(cfg, "PKU-Alignment/BeaverTails", _beavertails_row)
    safe = [ex for ex in examples if ex.category == "safe"]
    logger.info("beavertails_safe: kept %d safe of %d rows", len(safe), len(examples))
    if not safe:
        raise DataError(cfg.path or "PKU-Alignment/BeaverTails", None, "is_safe", "no safe row")
    return safe


def _truthfulqa_row(
    row: dict[str, Any], source: str, line: int, cfg: DatasetConfig
) -> PreferenceExample:
    question = text_field(row, "question", source, line).strip()
    answer = text_field(row, "best_answer", source, line).strip()
    category = row.get("category") if isinstance(row.get("category"), str) else None
    origin = f"{source}:{line}"
    return PreferenceExample(
        (Turn("user", question),), answer, "", category=category, origin=origin
    )


@DATASETS.register("truthfulqa_answers")
def load_truthfulqa_answers(cfg: DatasetConfig) -> list[PreferenceExample]:
    """TruthfulQA question -> best_answer (the reference's honesty data): the hub's
    truthfulqa/truthful_qa `generation` config (split validation, its only one), or a local
    file with question and best_answer columns. TruthfulQA is also an evaluation suite here: a
    model trained on it must not be scored on it."""
    path, limit = cfg.path or "truthfulqa/truthful_qa", cfg.max_examples
    name = None if cfg.path else "generation"
    source, records = load_records(path, name=name, split=cfg.split, limit=limit)
    if not records:
        raise DataError(source, None, None, "no rows")
    return [_truthfulqa_row(row, source, line, cfg) for line, row in records]
