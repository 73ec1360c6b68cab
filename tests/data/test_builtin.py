"""The shipped datasets: reproducible, balanced, short, held-out demo prompts, no harmful detail."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from alignment.data import builtin
from alignment.data.builtin import (
    COMPLIANCE,
    DEMO_BENIGN_PROMPTS,
    DEMO_PROMPTS,
    SAFETY_EVAL_PATH,
    SAFETY_PREFS_PATH,
    asset_path,
    write_assets,
)

LITMUS_AXIOMS = {
    "Civility & Tolerance",
    "Duty & Accountability",
    "Empathy & Helpfulness",
    "Information Seeking",
    "Justice & Rights",
    "Well-being & Peace",
    "Wisdom & Knowledge",
}


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def prefs() -> list[dict]:
    return read(SAFETY_PREFS_PATH)


@pytest.fixture(scope="module")
def evals() -> list[dict]:
    return read(SAFETY_EVAL_PATH)


def test_regenerating_gives_byte_identical_files(tmp_path):
    for path in write_assets(tmp_path):
        committed = builtin.ASSETS_DIR / path.name
        assert path.read_bytes() == committed.read_bytes(), (
            f"{committed} is stale: run `python -m alignment.data.builtin`"
        )


def test_asset_path():
    assert asset_path("safety_prefs.jsonl") == SAFETY_PREFS_PATH and SAFETY_PREFS_PATH.is_file()


def test_prefs_size_and_categories(prefs):
    counts = Counter(row["category"] for row in prefs)
    assert 300 <= len(prefs) <= 400
    assert 0.2 <= counts.pop("benign") / len(prefs) <= 0.3
    assert len(counts) == 10 and min(counts.values()) >= 20
    assert all(
        set(row) == {"instruction", "prompt", "chosen", "rejected", "category"} for row in prefs
    )
    assert len({row["instruction"] for row in prefs}) >= 5


def test_prefs_are_short_and_varied(prefs):
    words = lambda text: len(text.split())  # noqa: E731
    assert max(words(row["prompt"]) for row in prefs) < 25
    assert max(max(words(row["chosen"]), words(row["rejected"])) for row in prefs) < 60
    assert len({row["prompt"] for row in prefs}) == len(prefs)
    harmful = [row for row in prefs if row["category"] != "benign"]
    assert len({row["chosen"] for row in harmful}) > len(harmful) // 2
    assert len({row["prompt"].split()[0] for row in harmful}) >= 8  # varied phrasings


def test_harmful_rejections_are_only_generic_templates(prefs):
    """Every compliance is a template with the topic filled in: no room for real detail."""
    patterns = [re.compile(re.escape(t).replace(r"\{\}", "(.+)") + "$") for t in COMPLIANCE]
    for row in prefs:
        if row["category"] != "benign":
            assert any(p.match(row["rejected"]) for p in patterns), row["rejected"]
            assert row["chosen"] != row["rejected"]


def test_benign_rows_prefer_help_over_refusal(prefs):
    benign = [row for row in prefs if row["category"] == "benign"]
    assert all(row["chosen"] not in builtin.OVER_REFUSALS for row in benign)
    assert all(row["rejected"] in builtin.OVER_REFUSALS for row in benign)


def test_demo_prompts_are_held_out_but_paraphrased(prefs, evals):
    train = {row["prompt"].lower() for row in prefs}
    assert not train & {p.lower() for p in DEMO_PROMPTS + DEMO_BENIGN_PROMPTS}
    assert not {row["input"].lower() for row in evals} & {p.lower() for p in DEMO_PROMPTS}
    assert any("bomb" in prompt for prompt in train)


def test_eval_set_is_balanced_and_disjoint(prefs, evals):
    assert 140 <= len(evals) <= 200
    assert {row["axiom"] for row in evals} == LITMUS_AXIOMS
    cells = Counter((row["axiom"], row["safety_label"]) for row in evals)
    assert len(cells) == 14 and len(set(cells.values())) == 1
    inputs = [row["input"].lower() for row in evals]
    assert len(set(inputs)) == len(inputs)
    assert not set(inputs) & {row["prompt"].lower() for row in prefs}
