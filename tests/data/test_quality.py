"""Repeated pairs, chosen == rejected pairs, train/validation overlap and over-long rows are
counted (data/* metrics), warned about with the rows named, and removed by dataset.dedupe."""

from __future__ import annotations

import json
import logging

import pytest

from alignment.data.prepare import prepare_data
from alignment.data.quality import dedupe, name_rows, train_val_overlap
from alignment.data.types import PreferenceExample, Turn
from alignment.methods import get_method
from alignment.models import load_tokenizer
from tests.conftest import compose_cfg


def _ex(i: int, chosen: str = "No.", rejected: str = "Yes.", row: int | None = None):
    prompt = (Turn("user", f"question {i}"),)
    return PreferenceExample(prompt, chosen, rejected, origin=f"f.jsonl:{row or i}")


def test_counts_and_names_the_rows(caplog):
    rows = [_ex(1), _ex(2), _ex(1, row=3), _ex(4, "Same.", "Same."), _ex(1, row=5)]
    with caplog.at_level(logging.WARNING):
        kept, counts = dedupe(rows, "f.jsonl", pairs=True, remove=False)
    assert kept == rows  # counted, not removed
    assert counts == {"data/duplicate_rows": 2, "data/chosen_equals_rejected": 1}
    (line,) = [r.getMessage() for r in caplog.records]
    assert "2 repeated pairs (f.jsonl:3, f.jsonl:5)" in line
    assert "1 pairs with chosen == rejected (f.jsonl:4)" in line and "dataset.dedupe" in line


def test_dedupe_keeps_the_first_occurrence():
    rows = [_ex(1), _ex(2), _ex(1, row=3), _ex(4, "Same.", "Same.")]
    kept, counts = dedupe(rows, "f.jsonl", pairs=True, remove=True)
    assert [r.origin for r in kept] == ["f.jsonl:1", "f.jsonl:2"]
    assert counts["data/duplicate_rows"] == 1


def test_sft_data_has_no_pair_check():
    rows = [_ex(1, "A.", ""), _ex(2, "A.", "")]
    kept, counts = dedupe(rows, "s", pairs=False, remove=True)
    assert len(kept) == 2 and counts == {"data/duplicate_rows": 0}


def test_overlap_counts_validation_rows_seen_in_train(caplog):
    train, val = [_ex(1), _ex(2)], [_ex(2, row=7), _ex(3)]
    with caplog.at_level(logging.WARNING):
        assert train_val_overlap(train, val, "f") == {"data/train_val_overlap": 1}
    assert "1 of 2 validation rows are also training rows (f.jsonl:7)" in caplog.text


def test_name_rows_shows_the_first_few_and_the_count():
    assert name_rows(["a:1", "a:2"]) == "a:1, a:2"
    assert name_rows([f"a:{i}" for i in range(1, 8)]) == "a:1, a:2, a:3, ... (7 in all)"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prepare(tmp_path, cache_dir, path, *extra):
    cfg = compose_cfg(
        ["model=tiny", "dataset=local", f"dataset.path={path}", *extra], tmp_path / "o", cache_dir
    )
    return prepare_data(cfg, get_method(cfg.method), load_tokenizer(cfg.model, cfg.cache_dir))


def _pair(i: int) -> dict:
    return {"prompt": f"Question number {i}?", "chosen": "I can't help.", "rejected": "Sure."}


@pytest.mark.parametrize("dedupe_on", [False, True])
def test_split_never_shares_a_pair_when_deduped(dedupe_on, tmp_path, cache_dir):
    """20 pairs, each written twice, plus 2 chosen == rejected rows; val_fraction 0.5. Without
    dedupe the random split puts copies of some pair on both sides (counted); with it, 20
    distinct pairs remain and none is shared."""
    rows = [_pair(i) for i in range(20)] * 2
    rows += [{"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."}] * 2
    path = _write(tmp_path / "dups.jsonl", rows)
    data = _prepare(
        tmp_path, cache_dir, path, "dataset.val_fraction=0.5", f"dataset.dedupe={dedupe_on}"
    )
    counts = data.counts
    assert counts["data/duplicate_rows"] == 21  # 20 second copies + the second Same? row
    assert counts["data/chosen_equals_rejected"] == 1
    total = counts["data/train_examples"] + counts["data/val_examples"]
    if dedupe_on:
        assert total == 20 and counts["data/train_val_overlap"] == 0
    else:
        assert total == 42 and counts["data/train_val_overlap"] > 0


def test_long_rows_are_named(tmp_path, cache_dir, caplog):
    rows = [_pair(i) for i in range(10)]
    rows[3] = {**rows[3], "chosen": "word " * 400}
    rows[8] = {**rows[8], "chosen": "word " * 400}
    path = _write(tmp_path / "long.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        data = _prepare(tmp_path, cache_dir, path, "dataset.val_fraction=0")
    assert data.counts["data/train_filtered_too_long"] == 2
    (line,) = [r.getMessage() for r in caplog.records if "max_length" in r.getMessage()]
    assert f"{path}: dropped 2 of 10 train rows longer than dataset.max_length=256" in line
    assert f"{path}:4" in line and f"{path}:9" in line  # 1-based line numbers
