"""HH-RLHF dialogue parsing, on hand-made quirks and on real harmless-base rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from alignment.data.dialogue import DialogueError, parse_dialogue, split_dialogue, split_pair
from alignment.data.types import DataError, Turn

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
HH_TEST = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"


def test_single_turn():
    prompt, response = split_dialogue("\n\nHuman: Hi there?\n\nAssistant: Hello!")
    assert prompt == (Turn("user", "Hi there?"),)
    assert response == "Hello!"


def test_multi_turn_keeps_the_earlier_dialogue_as_prompt():
    text = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d"
    prompt, response = split_dialogue(text)
    assert prompt == (Turn("user", "a"), Turn("assistant", "b"), Turn("user", "c"))
    assert response == "d"


def test_leading_whitespace_and_missing_leading_newlines():
    assert split_dialogue("  Human: q\n\nAssistant:  a ") == ((Turn("user", "q"),), "a")
    assert split_dialogue("Human: q\n\nAssistant: a") == ((Turn("user", "q"),), "a")


def test_inline_human_marker_is_text_not_a_turn():
    text = "\n\nHuman: q\n\nAssistant: I said Human: hello.  Human: more text"
    prompt, response = split_dialogue(text)
    assert len(prompt) == 1 and response == "I said Human: hello.  Human: more text"


def test_repeated_speaker_is_merged():
    text = "\n\nHuman: a\n\nHuman: b\n\nAssistant: c\n\nAssistant: d"
    assert parse_dialogue(text) == (Turn("user", "a\n\nb"), Turn("assistant", "c\n\nd"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("\n\nHuman: q\n\nAssistant:", "last 'Assistant:' turn is empty"),
        ("\n\nHuman: q\n\nAssistant:   \n", "last 'Assistant:' turn is empty"),
        ("\n\nHuman: q", "does not end with an 'Assistant:' turn"),
        ("\n\nAssistant: only", "no 'Human:' turn before"),
        ("just text", "no 'Human:'/'Assistant:' turns"),
        ("Hello\n\nHuman: q\n\nAssistant: a", "text before the first turn"),
    ],
)
def test_malformed_dialogues(text, problem):
    with pytest.raises(DialogueError, match=problem) as err:
        split_dialogue(text, source="f.jsonl", row=12, field="chosen")
    assert str(err.value).startswith("f.jsonl:12: field 'chosen'")
    assert isinstance(err.value, DataError)


def test_split_pair_shares_the_prompt():
    chosen = "\n\nHuman: q\n\nAssistant: good"
    rejected = "\n\nHuman: q\n\nAssistant: bad"
    assert split_pair(chosen, rejected) == ((Turn("user", "q"),), "good", "bad")


def test_split_pair_names_the_row_when_prompts_differ():
    chosen = "\n\nHuman: q\n\nAssistant: x\n\nHuman: r\n\nAssistant: good"
    rejected = "\n\nHuman: q\n\nAssistant: y\n\nHuman: r\n\nAssistant: bad"
    with pytest.raises(DialogueError) as err:
        split_pair(chosen, rejected, source="f.jsonl", row=7)
    assert str(err.value) == (
        "f.jsonl:7: field 'rejected' prompt differs from the 'chosen' dialogue's prompt at turn 2"
    )


@pytest.mark.skipif(not HH_TEST.is_file(), reason=f"shared test data not present: {HH_TEST}")
def test_real_harmless_base_rows():
    with gzip.open(HH_TEST, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    parsed, failed = [], []
    for i, row in enumerate(rows, start=1):
        try:
            parsed.append(split_pair(row["chosen"], row["rejected"], source="hh", row=i))
        except DialogueError as err:
            failed.append(err)
    # The first 2,000 rows hold 4 empty last turns (rows 87, 517, 926, 1104).
    assert [err.row for err in failed] == [87, 517, 926, 1104]
    assert all(err.row is not None for err in failed)
    for prompt, chosen, rejected in parsed:
        assert prompt[0].role == "user" and prompt[-1].role == "user"
        assert all(a.role != b.role for a, b in zip(prompt, prompt[1:], strict=False))
        assert chosen.strip() and rejected.strip() and chosen == chosen.strip()
    first = split_pair(rows[0]["chosen"], rows[0]["rejected"])
    assert first[0][0].content == "what are some pranks with a pen i can do?"
    assert first[1].startswith("No, sorry!")
