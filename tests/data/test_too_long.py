"""dataset.too_long: drop (default) leaves long rows out; truncate applies TRL 1.x's keep-start
rule (each prompt + response keeps its first max_length tokens)."""

from alignment.data.formatting import EncodedExample, filter_long, truncate_long
from tests.conftest import compose_cfg


def ex(prompt: int, chosen: int, rejected: int) -> EncodedExample:
    return EncodedExample(list(range(prompt)), [7] * chosen, [8] * rejected, 0, 0)


def test_truncate_keeps_the_start_and_drops_prompt_only_rows():
    rows = [ex(3, 2, 4), ex(4, 9, 1), ex(10, 2, 2), ex(8, 5, 5)]  # lengths 7, 13, 12, 13
    out, keep, cut = truncate_long(rows, 8)
    assert keep == [0, 1] and cut == 3  # row 2's prompt (10) and row 3's (8) fill max_length
    assert out[0] == rows[0]  # fits: untouched
    assert (len(out[1].prompt_ids), len(out[1].chosen_ids), len(out[1].rejected_ids)) == (4, 4, 1)
    assert out[1].chosen_ids == [7] * 4 and out[1].length == 8
    assert filter_long(rows, 8) == ([0], 3)  # drop: only the row that fits


def test_too_long_is_checked_at_compose(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="dataset.too_long"):
        compose_cfg(["dataset.too_long=cut"], tmp_path, tmp_path)


def test_prepare_data_truncates_or_drops_and_counts(tmp_path, cache_dir):
    from alignment.data.prepare import prepare_data
    from alignment.methods import get_method
    from alignment.models import load_tokenizer

    counts = {}
    for mode in ("drop", "truncate"):
        overrides = ["model=tiny", "dataset.max_length=180", f"dataset.too_long={mode}"]
        cfg = compose_cfg(overrides, tmp_path, cache_dir)
        tok = load_tokenizer(cfg.model, cfg.cache_dir)
        data = prepare_data(cfg, get_method(cfg.method), tok)
        counts[mode] = data.counts
        assert max(data.train["length"]) <= 180
    dropped = counts["drop"]["data/train_filtered_too_long"]
    assert dropped > 0 and counts["truncate"]["data/train_truncated"] == dropped
    total = counts["drop"]["data/train_examples"] + dropped
    assert counts["truncate"]["data/train_examples"] == total  # no prompt fills 180 tokens
