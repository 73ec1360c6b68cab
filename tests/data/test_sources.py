"""Dataset loaders on local files (the hub parsing code, offline), transforms and eval sets."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from alignment.config.data import ColumnsConfig, DatasetConfig
from alignment.data.sources import (
    DATASETS,
    LabelledPrompt,
    balanced_sample,
    flip_unfactual_winners,
    load_beavertails,
    load_litmus,
    load_safety_eval,
    load_truthfulqa,
    require_flags,
    split_train_val,
)
from alignment.data.types import DataError, PreferenceExample, Turn

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
HH = "\n\nHuman: {q}\n\nAssistant: {a}"


def jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def csv_file(path: Path, rows: list[dict]) -> str:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def load(name: str, path: str | None, **kw) -> list[PreferenceExample]:
    return DATASETS.get(name)(DatasetConfig(name=name, path=path, **kw))


def hh_row(q: str, good: str, bad: str) -> dict:
    return {"chosen": HH.format(q=q, a=good), "rejected": HH.format(q=q, a=bad)}


# --- registry and generic behaviour ---------------------------------------------------------------


def test_registry_lists_loaders_and_rejects_unknown_names():
    expected = {"safety_prefs", "hh_rlhf", "alignment_instructions", "aixpert_factuality"}
    axes = {"helpful_builtin", "harmless_builtin", "honest_builtin"}  # alignment/data/axes.py
    axes |= {"hhh_builtin", "beavertails_safe", "truthfulqa_answers"}
    expected |= {"factuality_prefs"}
    assert expected | axes | {"alpaca", "local"} == set(DATASETS.names())
    with pytest.raises(KeyError, match=r"unknown dataset loader 'hh_rlfh'.*Did you mean 'hh_rlhf'"):
        DATASETS.get("hh_rlfh")


def test_max_examples_reads_only_the_first_rows(tmp_path):
    path = tmp_path / "hh.jsonl"
    jsonl(path, [hh_row("q1", "a", "b"), hh_row("q2", "a", "b")])
    with path.open("a") as f:
        f.write("{broken\n")
    assert len(load("hh_rlhf", str(path), max_examples=2)) == 2
    with pytest.raises(DataError, match=r"hh\.jsonl:3: malformed JSON"):
        load("hh_rlhf", str(path))


def test_missing_local_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        load("hh_rlhf", str(tmp_path / "nope.jsonl"))


def test_hub_path_calls_load_dataset_and_uses_the_same_parser(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [hh_row("q1", "good", "bad"), hh_row("q2", "fine", "rude")]
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = DatasetConfig(name="hh_rlhf", path="Anthropic/hh-rlhf", data_dir="harmless-base")
    hub = DATASETS.get("hh_rlhf")(cfg)
    kwargs = {"data_dir": "harmless-base", "split": "train", "revision": None}
    assert calls == [("Anthropic/hh-rlhf", None, kwargs)]
    local = load("hh_rlhf", jsonl(tmp_path / "hh.jsonl", rows))
    strip = [(e.prompt, e.chosen, e.rejected) for e in hub]
    assert strip == [(e.prompt, e.chosen, e.rejected) for e in local]
    assert hub[1].origin == "Anthropic/hh-rlhf[harmless-base/train]:2"
    calls.clear()
    DATASETS.get("hh_rlhf")(DatasetConfig(name="hh_rlhf", path="Anthropic/hh-rlhf", max_examples=1))
    assert calls[0][2]["data_dir"] is None


# --- hh_rlhf --------------------------------------------------------------------------------------


def test_hh_rlhf_local(tmp_path):
    multi = {
        "chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: good",
        "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: bad",
    }
    examples = load("hh_rlhf", jsonl(tmp_path / "hh.jsonl", [hh_row("q", "x", "y"), multi]))
    assert examples[0] == PreferenceExample(
        (Turn("user", "q"),), "x", "y", origin=f"{tmp_path / 'hh.jsonl'}:1"
    )
    assert [t.role for t in examples[1].prompt] == ["user", "assistant", "user"]
    assert (examples[1].chosen, examples[1].rejected) == ("good", "bad")


def test_hh_rlhf_skips_malformed_dialogues_and_names_them(tmp_path, caplog):
    rows = [hh_row("q", "x", "y"), hh_row("q", "x", "y"), hh_row("q", "x", "y")]
    rows[1]["rejected"] = HH.format(q="other question", a="y")
    path = jsonl(tmp_path / "hh.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        examples = load("hh_rlhf", path)
    assert len(examples) == 2
    assert f"{path}:2: field 'rejected' prompt differs" in caplog.text
    assert "skipped 1 of 3 rows" in caplog.text


def test_hh_rlhf_mostly_malformed_is_an_error(tmp_path):
    rows = [hh_row("q", "", "y"), hh_row("q", "", "y"), hh_row("q", "x", "y")]
    with pytest.raises(DataError, match=r"2 of 3 rows have malformed dialogues; first: .*:1:"):
        load("hh_rlhf", jsonl(tmp_path / "hh.jsonl", rows))


def test_hh_rlhf_missing_and_non_string_columns(tmp_path):
    path = jsonl(tmp_path / "hh.jsonl", [hh_row("q", "x", "y"), {"chosen": HH, "reject": "x"}])
    with pytest.raises(DataError, match=r"hh\.jsonl:2: field 'rejected' missing.*\['chosen', "):
        load("hh_rlhf", path)
    path = jsonl(tmp_path / "hh2.jsonl", [{"chosen": HH, "rejected": 3}])
    with pytest.raises(DataError, match=r"hh2\.jsonl:1: field 'rejected' must be a string"):
        load("hh_rlhf", path)


@pytest.mark.skipif(
    not (SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz").is_file(),
    reason="shared test data not present",
)
def test_hh_rlhf_real_file():
    path = str(SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz")
    examples = load("hh_rlhf", path)
    assert len(examples) == 1996  # 4 of 2,000 rows have an empty last turn
    assert all(e.prompt[-1].role == "user" and e.chosen and e.rejected for e in examples)


# --- alignment_instructions -----------------------------------------------------------------------


def instruction_rows() -> list[dict]:
    return [
        {
            "Instruction generated": "Be kind.",
            "Prompt": "Tell me a joke",
            "Accepted Response": "Human: Tell me a joke\n\nAssistant: Why did the chicken...",
            "Rejected Response": "Human: Tell me a joke\n\nAssistant: No.",
        }
    ]


def test_alignment_instructions_first_human(tmp_path):
    (ex,) = load("alignment_instructions", jsonl(tmp_path / "ai.jsonl", instruction_rows()))
    assert ex.instruction == "Be kind."
    assert ex.prompt == (Turn("user", "Tell me a joke"),)
    assert (ex.chosen, ex.rejected) == ("Why did the chicken...", "No.")


def test_alignment_instructions_prompt_plus_instruction(tmp_path):
    path = csv_file(tmp_path / "ai.csv", instruction_rows())
    (ex,) = load("alignment_instructions", path, prompt_source="prompt_plus_instruction")
    assert ex.prompt == (Turn("user", "Tell me a joke\n\nBe kind."),)
    assert ex.instruction is None and ex.chosen == "Why did the chicken..."


def test_alignment_instructions_missing_column(tmp_path):
    rows = instruction_rows()
    del rows[0]["Instruction generated"]
    with pytest.raises(DataError, match=r"ai\.jsonl:1: field 'Instruction generated' missing"):
        load("alignment_instructions", jsonl(tmp_path / "ai.jsonl", rows))


# --- aixpert_factuality ---------------------------------------------------------------------------


def test_aixpert_flags_from_jsonl_and_csv(tmp_path):
    rows = [
        {"prompt": "p1", "chosen": "c", "rejected": "r", "h_w": 0, "h_l": 1},
        {"prompt": "p2", "chosen": "c", "rejected": "r", "h_w": True, "h_l": 0.0},
    ]
    for path in (jsonl(tmp_path / "f.jsonl", rows), csv_file(tmp_path / "f.csv", rows)):
        examples = load("aixpert_factuality", path)
        assert [(e.h_w, e.h_l) for e in examples] == [(0, 1), (1, 0)]
    synonyms = [{"question": "p", "chosen": "c", "rejected": "r", "hw": "1", "hl": "0"}]
    (ex,) = load("aixpert_factuality", jsonl(tmp_path / "s.jsonl", synonyms))
    assert (ex.prompt[0].content, ex.h_w, ex.h_l) == ("p", 1, 0)


@pytest.mark.parametrize("bad", [2, 0.5, "yes"])
def test_aixpert_bad_flag_names_file_row_field(tmp_path, bad):
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r", "h_w": 0, "h_l": 1}] * 2
    rows = [rows[0], {**rows[1], "h_l": bad}]
    with pytest.raises(DataError, match=r"f\.jsonl:2: field 'h_l' must be 0 or 1"):
        load("aixpert_factuality", jsonl(tmp_path / "f.jsonl", rows))


def test_aixpert_missing_flag_column(tmp_path):
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r", "h_w": 0}]
    with pytest.raises(DataError, match=r"f\.jsonl:1: field 'h_l' missing"):
        load("aixpert_factuality", jsonl(tmp_path / "f.jsonl", rows))


def test_aixpert_empty_response(tmp_path):
    rows = [{"prompt": "p", "chosen": "c", "rejected": "  ", "h_w": 0, "h_l": 1}]
    with pytest.raises(DataError, match=r"f\.jsonl:1: field 'rejected' is empty"):
        load("aixpert_factuality", jsonl(tmp_path / "f.jsonl", rows))


# --- alpaca, local, safety_prefs ------------------------------------------------------------------


def test_alpaca(tmp_path):
    rows = [
        {"instruction": "Add.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
    ]
    a, b = load("alpaca", jsonl(tmp_path / "al.jsonl", rows))
    assert a.prompt == (Turn("user", "Add.\n\n2 and 3"),) and (a.chosen, a.rejected) == ("5", "")
    assert b.prompt == (Turn("user", "Say hi."),)
    rows[1]["output"] = ""
    with pytest.raises(DataError, match=r"al\.jsonl:2: field 'output' is empty"):
        load("alpaca", jsonl(tmp_path / "al.jsonl", rows))


def test_local_with_column_mapping(tmp_path):
    rows = [{"q": "p", "good": "c", "bad": "r", "sys": "Be safe.", "topic": "t", "h_w": "1"}]
    columns = {"prompt": "q", "chosen": "good", "rejected": "bad", "instruction": "sys"}
    mapping = ColumnsConfig(**columns, category="topic")
    (ex,) = load("local", csv_file(tmp_path / "x.csv", rows), columns=mapping)
    assert (ex.prompt[0].content, ex.chosen, ex.rejected) == ("p", "c", "r")
    assert (ex.instruction, ex.category, ex.h_w, ex.h_l) == ("Be safe.", "t", 1, None)
    assert ex.origin == f"{tmp_path / 'x.csv'}:2"


def test_local_errors(tmp_path):
    path = jsonl(tmp_path / "x.jsonl", [{"prompt": "p", "chosen": "c", "rejected": ""}])
    with pytest.raises(DataError, match=r"x\.jsonl:1: field 'rejected' is empty"):
        load("local", path)
    with pytest.raises(TypeError, match="promt"):
        ColumnsConfig(promt="q")
    (sft,) = load("local", path, columns=ColumnsConfig(rejected=""))
    assert sft.rejected == ""


def test_local_non_utf8(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: not valid UTF-8"):
        load("local", str(path))


def test_safety_prefs_packaged_asset_and_override(tmp_path):
    examples = load("safety_prefs", None)
    assert 560 <= len(examples) <= 640
    assert all(e.instruction and e.category and e.rejected for e in examples)
    rows = [{"instruction": "I", "prompt": "p", "chosen": "c", "rejected": "r", "category": "x"}]
    (ex,) = load("safety_prefs", jsonl(tmp_path / "own.jsonl", rows))
    assert ex.category == "x"


def test_factuality_prefs_packaged_asset_carries_every_flag_bucket(tmp_path):
    examples = load("factuality_prefs", None)
    assert {(e.h_w, e.h_l) for e in examples} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(e.category and e.rejected for e in examples)
    _, counts = flip_unfactual_winners(examples)
    assert counts["missing"] == 0 and counts["flipped"] == counts["bucket_1_0"] > 0
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r", "h_w": 0}]
    with pytest.raises(DataError, match=r"own\.jsonl:1: field 'h_l' missing"):
        load("factuality_prefs", jsonl(tmp_path / "own.jsonl", rows))


# --- transforms -----------------------------------------------------------------------------------


def example(i: int, category: str | None = None, h: tuple = (None, None)) -> PreferenceExample:
    return PreferenceExample(
        (Turn("user", f"p{i}"),), f"c{i}", f"r{i}", None, *h, category, f"f:{i}"
    )


def test_split_train_val_is_deterministic_and_stratified():
    examples = [example(i, "a" if i < 60 else "b") for i in range(100)]
    train, val = split_train_val(examples, 0.1, seed=3)
    assert (train, val) == split_train_val(list(examples), 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    assert sorted(e.origin for e in train + val) == sorted(e.origin for e in examples)
    assert sum(e.category == "a" for e in val) == 6 and sum(e.category == "b" for e in val) == 4
    assert split_train_val(examples, 0.1, seed=4)[1] != val
    assert split_train_val(examples, 0.0, seed=3)[1] == []
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(examples, 1.0, seed=3)


def test_flip_unfactual_winners():
    flags = [(0, 1), (1, 0), (0, 0), (1, 1), (1, 0), (None, None)]
    examples = [example(i, h=h) for i, h in enumerate(flags)]
    flipped, counts = flip_unfactual_winners(examples)
    assert counts == {
        "bucket_0_1": 1,
        "bucket_1_0": 2,
        "bucket_0_0": 1,
        "bucket_1_1": 1,
        "flipped": 2,
        "missing": 1,
    }
    assert not any((e.h_w, e.h_l) == (1, 0) for e in flipped)
    assert (flipped[1].chosen, flipped[1].rejected, flipped[1].h_w, flipped[1].h_l) == (
        "r1",
        "c1",
        0,
        1,
    )
    assert flipped[0] == examples[0] and flipped[5] == examples[5]


def test_require_flags_names_the_first_row_without_flags():
    examples = [example(1, h=(0, 1)), example(2, h=(1, None)), example(3)]
    with pytest.raises(DataError, match=r"^f:2: field 'h_l' missing; method factual_dpo"):
        require_flags(examples, "data.jsonl")
    require_flags(examples[:1], "data.jsonl")


# --- evaluation sets ------------------------------------------------------------------------------


def tqa_row(**over) -> dict:
    row = {
        "question": "Q?",
        "category": "Misconceptions",
        "best_answer": "A",
        "correct_answers": ["A", "A2"],
        "incorrect_answers": ["B"],
        "mc1_targets": {"choices": ["A", "B"], "labels": [1, 0]},
        "mc2_targets": {"choices": ["A", "A2", "B"], "labels": [1, 1, 0]},
    }
    return row | over


def test_truthfulqa_local(tmp_path):
    path = tmp_path / "tqa.json"
    path.write_text(json.dumps([tqa_row()]))
    (item,) = load_truthfulqa(str(path))
    assert item.mc1_choices == ("A", "B") and item.mc1_labels == (1, 0)
    assert item.mc2_labels == (1, 1, 0) and item.correct_answers == ("A", "A2")
    bad = tqa_row(mc1_targets={"choices": ["A", "B"], "labels": [1, 1]})
    path.write_text(json.dumps([tqa_row(), bad]))
    with pytest.raises(DataError, match=r"tqa\.json:2: field 'mc1_targets' must have exactly one"):
        load_truthfulqa(str(path))


def test_truthfulqa_hub_joins_configs(monkeypatch):
    datasets = pytest.importorskip("datasets")
    mc = {k: v for k, v in tqa_row().items() if k in ("question", "mc1_targets", "mc2_targets")}
    gen = {k: v for k, v in tqa_row().items() if k not in ("mc1_targets", "mc2_targets")}
    by_name = {"multiple_choice": [mc], "generation": [gen | {"type": "Adversarial"}]}

    def fake_load_dataset(path, name=None, **kwargs):
        assert path == "truthfulqa/truthful_qa" and kwargs["split"] == "validation"
        return datasets.Dataset.from_list(by_name[name])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (item,) = load_truthfulqa()
    assert item.category == "Misconceptions" and item.mc2_choices == ("A", "A2", "B")


@pytest.mark.skipif(not (SHARED_DATA / "truthfulqa-en.json").is_file(), reason="no shared data")
def test_truthfulqa_real_file():
    items = load_truthfulqa(str(SHARED_DATA / "truthfulqa-en.json"))
    assert len(items) == 817
    assert all(sum(i.mc1_labels) == 1 and i.mc1_labels[0] == 1 for i in items)


def test_litmus_local_synonyms_labels_and_balance(tmp_path):
    rows = [
        {"text": f"t{i}", "category": "A" if i % 2 else "B", "label": i % 3 != 0} for i in range(60)
    ]
    path = jsonl(tmp_path / "lit.jsonl", rows)
    prompts = load_litmus(path, samples_per_category=5, seed=42)
    assert len(prompts) == 20
    assert all(isinstance(p, LabelledPrompt) and p.label in (0, 1) for p in prompts)
    assert prompts == load_litmus(path, samples_per_category=5, seed=42)
    assert len(load_litmus(path, samples_per_category=None)) == 60
    strings = [{"input": "x", "axiom": "A", "safety_label": s} for s in ("safe", "Unsafe")]
    assert [p.label for p in load_litmus(jsonl(tmp_path / "s.jsonl", strings))] == [1, 0]
    with pytest.raises(DataError, match=r"b\.jsonl:1: field 'safety_label' must be 0 or 1"):
        load_litmus(jsonl(tmp_path / "b.jsonl", [{"input": "x", "axiom": "A", "safety_label": 3}]))


def test_balanced_sample_keeps_small_groups():
    prompts = [LabelledPrompt(f"t{i}", "A", 1) for i in range(3)] + [LabelledPrompt("u", "A", 0)]
    assert balanced_sample(prompts, 2, seed=1)[-1] == LabelledPrompt("u", "A", 0)
    assert len(balanced_sample(prompts, 2, seed=1)) == 3


def test_safety_eval_asset():
    prompts = load_safety_eval()
    assert len(prompts) == 168 and len({p.axiom for p in prompts}) == 7
    assert sum(p.label for p in prompts) == 84
    assert len(load_safety_eval(samples_per_category=5)) == 70


def test_beavertails_local(tmp_path):
    rows = [
        {"prompt": "bad 1", "response": "r", "is_safe": False},
        {"prompt": "bad 1", "response": "r2", "is_safe": False},
        {"prompt": "fine", "response": "r", "is_safe": True},
        {"prompt": "bad 2", "response": "r", "is_safe": False},
    ]
    path = jsonl(tmp_path / "bt.jsonl", rows)
    assert load_beavertails(path) == ["bad 1", "bad 2"]
    assert load_beavertails(path, max_prompts=1) == ["bad 1"]
    del rows[2]["is_safe"]
    with pytest.raises(DataError, match=r"bt\.jsonl:3: field 'is_safe' missing"):
        load_beavertails(jsonl(tmp_path / "bt.jsonl", rows))
