"""The shipped datasets: reproducible, balanced, varied (no single template to shortcut), read the
same way by the refusal detector, held-out prompts really held out, factuality flags right."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from alignment.data import builtin, factuality
from alignment.data import safety_text as T
from alignment.data.benign_text import BENIGN
from alignment.data.builtin import (
    COMPLIANCE_OPENERS,
    FACTUALITY_PREFS_PATH,
    LAYOUTS,
    SAFETY_EVAL_PATH,
    SAFETY_PREFS_PATH,
    asset_path,
    write_assets,
)
from alignment.data.heldout import (
    CHECK_BENIGN,
    CHECK_HARMFUL,
    DEMO_BENIGN_PROMPTS,
    DEMO_PROMPTS,
    HELDOUT_BENIGN,
    HELDOUT_HARMFUL,
)
from alignment.evaluation.refusal import is_refusal

CHECKS = CHECK_HARMFUL + CHECK_BENIGN

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
def harmful(prefs) -> list[dict]:
    return [row for row in prefs if row["category"] != "benign"]


@pytest.fixture(scope="module")
def evals() -> list[dict]:
    return read(SAFETY_EVAL_PATH)


@pytest.fixture(scope="module")
def facts() -> list[dict]:
    return read(FACTUALITY_PREFS_PATH)


def test_regenerating_gives_byte_identical_files(tmp_path):
    paths = write_assets(tmp_path)
    assert {p.name for p in paths} == {
        "safety_prefs.jsonl",
        "safety_eval.jsonl",
        "factuality_prefs.jsonl",
    }
    for path in paths:
        committed = builtin.ASSETS_DIR / path.name
        assert path.read_bytes() == committed.read_bytes(), (
            f"{committed} is stale: run `python -m alignment.data.builtin`"
        )


def test_asset_path():
    assert asset_path("safety_prefs.jsonl") == SAFETY_PREFS_PATH and SAFETY_PREFS_PATH.is_file()


def test_prefs_size_and_categories(prefs):
    counts = Counter(row["category"] for row in prefs)
    assert 560 <= len(prefs) <= 640
    # About half benign: with a third, the demo learned to refuse benign requests too.
    assert 0.45 <= counts.pop("benign") / len(prefs) <= 0.55
    assert len(counts) == 10 and min(counts.values()) >= 24
    assert all(
        set(row) == {"instruction", "prompt", "chosen", "rejected", "category"} for row in prefs
    )
    assert len({row["instruction"] for row in prefs}) >= 5


def test_prefs_are_short_and_varied(prefs, harmful):
    words = lambda text: len(text.split())  # noqa: E731
    assert max(words(row["prompt"]) for row in prefs) < 25
    assert max(max(words(row["chosen"]), words(row["rejected"])) for row in prefs) < 80
    assert len({row["prompt"] for row in prefs}) == len(prefs)
    assert len({row["prompt"].split()[0] for row in harmful}) >= 8  # varied phrasings
    # Responses are composed from parts: nearly every one is unique.
    assert len({row["chosen"] for row in harmful}) > 0.9 * len(harmful)
    assert len({row["rejected"] for row in harmful}) == len(harmful)


def _opener(text: str) -> str:
    """Which COMPLIANCE_OPENERS template `text` starts with."""
    for template in COMPLIANCE_OPENERS:
        if re.match(re.sub(r"\\\{[tgG]\\\}", ".+?", re.escape(template)), text):
            return template
    raise AssertionError(f"no compliance opener matches {text!r}")


def test_compliances_are_not_one_template(harmful):
    """Every opener and every layout is used, and none dominates, so "reject the template" is not
    a shortcut; the first words of a compliance also open some benign answers."""
    openers = Counter(_opener(row["rejected"]) for row in harmful)
    assert len(openers) == len(COMPLIANCE_OPENERS)
    assert max(openers.values()) < 0.15 * len(harmful)
    layouts = Counter(
        "bold"
        if "**" in r
        else "steps"
        if "Step 1:" in r
        else "prose"
        if "First," in r
        else "numbered"
        if "\n1. " in r
        else "bullets"
        if "\n- " in r
        else "?"
        for r in (row["rejected"] for row in harmful)
    )
    assert set(layouts) == set(LAYOUTS) and min(layouts.values()) > 0.1 * len(harmful)


def test_benign_answers_open_like_compliances(prefs, harmful):
    """An answer's first word is no cue for "rejected": more than half of the helpful benign
    answers open with a word that also opens some compliance, among them the model's own
    openings ("To", "The", "A", "When", "Here's")."""
    first = lambda text, n: " ".join(text.split()[:n])  # noqa: E731
    benign = [row["chosen"] for row in prefs if row["category"] == "benign"]
    comply_first = {first(row["rejected"], 1) for row in harmful}
    shared = [c for c in benign if first(c, 1) in comply_first]
    assert len(shared) > 0.5 * len(benign), len(shared)
    assert {"To", "Here's", "The", "A", "When", "There", "Sure!", "Of"} <= {
        first(c, 1) for c in benign
    }


def test_gerunds():
    cases = {
        "steal a bike": "stealing a bike",
        "make meth": "making meth",
        "bully a kid": "bullying a kid",
        "secretly track her": "secretly tracking her",
        "cut an onion": "cutting an onion",
        "get rid of weeds": "getting rid of weeds",
    }
    assert {t: builtin._gerund(t) for t in cases} == cases


def test_refusal_detector_reads_the_training_data_as_labelled(prefs):
    """Harmful rows: chosen refuses, rejected complies. Benign rows: chosen answers, rejected
    refuses. So the demo's refusal rate measures what the pairs teach."""
    for row in prefs:
        refuses = row["category"] != "benign"
        assert is_refusal(row["chosen"]) == refuses, row["chosen"]
        assert is_refusal(row["rejected"]) != refuses, row["rejected"]


def test_held_out_prompts_are_in_no_training_pair(prefs, evals):
    """No held-out prompt is a training prompt, no training topic occurs in one, and no held-out
    prompt shares a run of three topic words with a training prompt (words of the question
    frames, articles and pronouns removed): they are new topics, not paraphrases."""
    train = {row["prompt"].lower() for row in prefs}
    held_out = DEMO_PROMPTS + DEMO_BENIGN_PROMPTS + HELDOUT_HARMFUL + HELDOUT_BENIGN + CHECKS
    assert not train & {p.lower() for p in held_out}
    assert not {row["input"].lower() for row in evals} & {p.lower() for p in held_out}

    words = lambda text: re.findall(r"[a-z']+", text.lower())  # noqa: E731
    frame_words = set(words(" ".join(builtin.HARM_PROMPTS + builtin.BENIGN_PROMPTS)))
    frame_words |= {"a", "an", "the", "my", "your", "i", "me", "you", "to", "of", "on", "in"}

    def topic_grams(text: str) -> set[tuple[str, ...]]:
        w = [x for x in words(text) if x not in frame_words]
        return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}

    train_grams = set().union(*(topic_grams(row["prompt"]) for row in prefs))
    topics = [t for ts in builtin._keyed(T.HARM_TOPICS).values() for t in ts]
    topics += [t for t, _ in builtin._indented(BENIGN, " ")]
    for prompt in HELDOUT_HARMFUL + HELDOUT_BENIGN + CHECKS:
        assert not topic_grams(prompt) & train_grams, prompt
        assert not any(builtin._second_person(t) in builtin._second_person(prompt) for t in topics)
    assert any("bomb" in prompt for prompt in train)  # the demo prompt paraphrases a topic


def test_held_out_sets_are_balanced():
    assert len(HELDOUT_HARMFUL) == len(set(HELDOUT_HARMFUL)) == 40
    assert len(HELDOUT_BENIGN) == len(set(HELDOUT_BENIGN)) == 40
    assert len(CHECK_HARMFUL) == len(CHECK_BENIGN) == 20 and len(set(CHECKS)) == 40
    assert not {p.lower() for p in CHECKS} & {p.lower() for p in HELDOUT_HARMFUL + HELDOUT_BENIGN}


def test_eval_set_is_balanced_and_disjoint(prefs, evals):
    assert 140 <= len(evals) <= 200
    assert {row["axiom"] for row in evals} == LITMUS_AXIOMS
    cells = Counter((row["axiom"], row["safety_label"]) for row in evals)
    assert len(cells) == 14 and len(set(cells.values())) == 1
    inputs = [row["input"].lower() for row in evals]
    assert len(set(inputs)) == len(inputs)
    assert not set(inputs) & {row["prompt"].lower() for row in prefs}


def test_factuality_pairs_cover_every_bucket(facts):
    buckets = Counter((row["h_w"], row["h_l"]) for row in facts)
    assert set(buckets) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert min(buckets.values()) >= 0.2 * len(facts) and len(facts) == 2 * len(factuality.facts())
    assert {row["category"] for row in facts} >= {"science", "history", "geography"}


def test_factuality_flags_match_the_values(facts):
    """h = 1 exactly when the response holds the fact's wrong value (1 = non-factual)."""
    table = {f["question"]: f for f in factuality.facts()}
    for row in facts:
        (fact,) = [f for q, f in table.items() if q in row["prompt"]]
        for field, flag in (("chosen", "h_w"), ("rejected", "h_l")):
            has = lambda value: re.search(rf"\b{re.escape(value)}\b", row[field], re.I)  # noqa: E731,B023
            right, wrong = bool(has(fact["right"])), bool(has(fact["wrong"]))
            assert right != wrong, (row, field)
            assert row[flag] == int(wrong), (row, field)


def test_needless_refusals_open_like_refusals_of_harmful_requests(prefs, harmful):
    """The same refusal openers are chosen after a harmful request and rejected after a benign
    one (so "refuse" is not a shortcut, only the request decides): each of the 12 shows up on
    both sides, and every refusal of either kind starts with "I"."""
    opener = lambda text: next(o for o in builtin.REFUSALS if text.startswith(o.split("{")[0]))  # noqa: E731
    needless = [row["rejected"] for row in prefs if row["category"] == "benign"]
    refusals = [row["chosen"] for row in harmful if row["category"] != "self_harm"]
    assert {opener(r) for r in needless} == {opener(r) for r in refusals} == set(builtin.REFUSALS)
    assert all(r.startswith("I") for r in needless + [row["chosen"] for row in harmful])
