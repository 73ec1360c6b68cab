"""Axis data of MAC and AlignX (alignment/data/axes.py, honesty.py): offline defaults that fit
their axis, the honesty asset's reproducibility, and the hub loaders on local files."""

from __future__ import annotations

import json

import pytest

from alignment.axes import AXES
from alignment.config.data import DatasetConfig
from alignment.data.axes import BUILTIN_AXIS_DATA, HUB_AXIS_DATA
from alignment.data.honesty import HONESTY_PATH, honesty_rows, write_honesty
from alignment.data.sources import DATASETS
from alignment.data.types import DataError
from alignment.evaluation.refusal import is_refusal
from tests.conftest import SHARED_DATA


def load(name: str, **kw):
    return DATASETS.get(name)(DatasetConfig(name=name, **kw))


def test_every_axis_has_an_offline_and_a_hub_loader():
    assert tuple(BUILTIN_AXIS_DATA) == tuple(HUB_AXIS_DATA) == AXES
    for name in [*BUILTIN_AXIS_DATA.values(), *HUB_AXIS_DATA.values()]:
        assert name in DATASETS


def test_offline_axis_data_fits_each_axis():
    helpful, harmless, honest = (load(BUILTIN_AXIS_DATA[a]) for a in AXES)
    assert len(helpful) == 316 and len(harmless) == 280 and len(honest) == 50
    assert all(ex.rejected == "" for ex in helpful + harmless + honest)  # SFT rows
    assert {ex.category for ex in helpful} == {"benign"}
    assert "benign" not in {ex.category for ex in harmless}
    # harmlessness answers are refusals; helpful answers are not (the demo's string-match detector)
    assert all(is_refusal(ex.chosen) for ex in harmless)
    assert not any(is_refusal(ex.chosen) for ex in helpful)
    assert {ex.category for ex in honest} == {"unknowable", "capability", "premise"}
    prompts = [ex.prompt[-1].content for ex in helpful + harmless + honest]
    assert len(set(prompts)) == len(prompts)  # no prompt serves two axes


def test_honesty_asset_regenerates_byte_identically(tmp_path):
    out = write_honesty(tmp_path / "honesty.jsonl")
    assert out.read_bytes() == HONESTY_PATH.read_bytes()
    rows = honesty_rows()
    assert len(rows) == 50 and all(set(r) == {"prompt", "chosen", "category"} for r in rows)


def test_honesty_questions_are_not_truthfulqa_questions():
    path = SHARED_DATA / "truthfulqa-en.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (real TruthfulQA, only for this overlap check)")
    truthful = {q["question"].strip().lower() for q in json.loads(path.read_text())}
    assert not {r["prompt"].strip().lower() for r in honesty_rows()} & truthful


def test_beavertails_safe_keeps_only_safe_rows(tmp_path):
    path = tmp_path / "bt.jsonl"
    rows = [
        {"prompt": "p1", "response": "a safe answer", "is_safe": True},
        {"prompt": "p2", "response": "an unsafe answer", "is_safe": False},
        {"prompt": "p3", "response": "another safe one", "is_safe": "true"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = load("beavertails_safe", path=str(path))
    assert [ex.chosen for ex in out] == ["a safe answer", "another safe one"]
    path.write_text(json.dumps({"prompt": "p", "response": "r", "is_safe": "maybe"}) + "\n")
    with pytest.raises(DataError, match=r"bt.jsonl:1: field 'is_safe'"):
        load("beavertails_safe", path=str(path))


def test_truthfulqa_answers_reads_question_and_best_answer(tmp_path):
    path = tmp_path / "tq.json"
    path.write_text(json.dumps([{"question": "Q?", "best_answer": "A.", "category": "Law"}]))
    (ex,) = load("truthfulqa_answers", path=str(path))
    assert ex.prompt[0].content == "Q?" and ex.chosen == "A." and ex.category == "Law"
    path.write_text(json.dumps([{"question": "Q?"}]))
    with pytest.raises(DataError, match="best_answer"):
        load("truthfulqa_answers", path=str(path))
