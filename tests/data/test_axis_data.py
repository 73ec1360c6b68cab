"""Round-robin axis data (alignment/data/axis_data.py): every batch holds one batch of each axis."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from alignment.axes import AXES
from alignment.data.axes import BUILTIN_AXIS_DATA
from alignment.data.axis_data import AxisCollator, axis_source, prepare_axis_data, round_robin
from alignment.data.formatting import EncodedExample, encode_examples
from alignment.data.sources import DATASETS
from alignment.data.types import DataError
from alignment.methods import get_method
from alignment.models import load_tokenizer
from tests.conftest import compose_cfg

ENCODING = {"use_instruction": False, "supports_system_role": True}


def enc(tag: int, n: int) -> list[EncodedExample]:
    return [EncodedExample([tag, i], [tag, i, 99], [], 0, 0) for i in range(n)]


def test_round_robin_lengths_and_item_layout():
    axes = [enc(1, 2), enc(2, 5), enc(3, 3)]
    short = round_robin(axes, "shortest")
    assert len(short) == 2
    assert short[1]["prompt_ids"] == [[1, 1], [2, 1], [3, 1]]
    long = round_robin(axes, "longest")
    assert len(long) == 5
    assert long[4]["prompt_ids"] == [[1, 0], [2, 4], [3, 1]]  # 4 mod 2, 4, 4 mod 3
    with pytest.raises(ValueError, match="method.round_robin"):
        round_robin(axes, "all")


def test_collator_gives_one_batch_per_axis_per_step():
    data = round_robin([enc(1, 4), enc(2, 4), enc(3, 4)])
    loader = DataLoader(data, batch_size=2, shuffle=True, collate_fn=AxisCollator(0))
    for batch in loader:
        assert batch["axis"].tolist() == [0, 0, 1, 1, 2, 2]
        assert batch["input_ids"][:, 0].tolist() == [1, 1, 2, 2, 3, 3]  # each row its axis
        labelled = batch["labels"] != -100
        assert labelled.sum(1).tolist() == [3] * 6  # response tokens only
    assert len(loader) == 2


def test_prepare_axis_data_on_the_builtin_axes(tmp_path, cache_dir):
    cfg = compose_cfg(["model=tiny", "method=sft"], tmp_path, cache_dir)
    tok = load_tokenizer(cfg.model, cfg.cache_dir)
    sources = {a: axis_source(cfg.dataset, BUILTIN_AXIS_DATA[a]) for a in AXES}
    data = prepare_axis_data(cfg, sources, tok, get_method(cfg.method))
    # honesty is the smallest axis: 50 rows, 5 held out (val_fraction 0.1, per category)
    assert data.counts["data/honesty/train_examples"] == len(data.train) == 45
    assert data.counts["data/harmlessness/train_examples"] > 200
    batch = AxisCollator(tok.pad_token_id)([data.train[i] for i in range(3)])
    assert batch["axis"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    text = tok.decode(batch["input_ids"][6][batch["attention_mask"][6].bool()])
    assert text.count("<|im_start|>") == 2 and torch.is_tensor(batch["labels"])
    assert data.val is not None and len(data.val) == 5


def test_dedupe_and_too_long_apply_per_axis(tmp_path, cache_dir):
    """An honesty file of 12 distinct rows plus 2 repeats of row 0: dataset.dedupe=true removes
    the 2 (data/honesty/duplicate_rows = 2; 12 rows left: 11 train + 1 val at val_fraction 0.1).
    With dataset.max_length 4 tokens past the longest prompt, every row is longer: `truncate`
    keeps and cuts all 11 training rows (data/honesty/train_truncated = 11) to max_length, where
    `drop` leaves none of them (an axis without training rows: one DataError line)."""
    answer = "I can't know that. " * 10
    # long prompts, so that max_length leaves room for the other axes' (shorter) prompts
    ask = "what the far future holds for people, cities and the weather " * 4
    rows = [{"prompt": f"Question {i}: {ask}?", "chosen": answer * 4} for i in range(12)]
    path = tmp_path / "honesty.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [*rows, rows[0], rows[0]]) + "\n")
    cfg = compose_cfg(["model=tiny", "method=sft"], tmp_path, cache_dir)
    tok = load_tokenizer(cfg.model, cfg.cache_dir)
    source = axis_source(cfg.dataset, "honest_builtin", str(path))
    encoded = encode_examples(tok, DATASETS.get("honest_builtin")(source), **ENCODING)
    max_length = max(len(e.prompt_ids) for e in encoded) + 4
    assert min(e.length for e in encoded) > max_length
    base = ["model=tiny", "method=sft", "dataset.dedupe=true", f"dataset.max_length={max_length}"]
    for too_long in ("truncate", "drop"):
        cfg = compose_cfg([*base, f"dataset.too_long={too_long}"], tmp_path, cache_dir)
        sources = {a: axis_source(cfg.dataset, BUILTIN_AXIS_DATA[a]) for a in AXES}
        sources["honesty"] = axis_source(cfg.dataset, "honest_builtin", str(path))
        if too_long == "drop":
            with pytest.raises(DataError, match="no training row fits dataset.max_length"):
                prepare_axis_data(cfg, sources, tok, get_method(cfg.method))
            continue
        data = prepare_axis_data(cfg, sources, tok, get_method(cfg.method))
        assert data.counts["data/honesty/duplicate_rows"] == 2
        assert data.counts["data/honesty/train_examples"] == 11
        assert data.counts["data/honesty/val_examples"] == 1
        assert data.counts["data/honesty/train_truncated"] == 11
        honesty = [(item["prompt_ids"][2], item["chosen_ids"][2]) for item in data.train]
        assert max(len(p) + len(c) for p, c in honesty) == max_length
