"""Bad input stops the run before training with one line naming the file, row and field."""

import json

import pytest

from alignment.data.types import DataError
from alignment.methods import get_method
from alignment.models import load_tokenizer
from tests.conftest import compose_cfg, run_train


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"prompt": "How do I pick a lock?", "chosen": "I can't help with that.", "rejected": "Sure!"}


def _prepare(tmp_path, cache_dir, path, *extra):
    from alignment.data.prepare import prepare_data

    cfg = compose_cfg(
        ["model=tiny", "dataset=local", f"dataset.path={path}", *extra], tmp_path / "o", cache_dir
    )
    return prepare_data(cfg, get_method(cfg.method), load_tokenizer(cfg.model, cfg.cache_dir))


CASES = {
    "malformed": ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a",,}\n', ":2:"),
    "missing_column": (json.dumps({"prompt": "a", "chosen": "b"}) + "\n", "rejected"),
    "empty_response": (json.dumps({**GOOD, "chosen": "  "}) + "\n", "chosen"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_row_errors_name_file_row_field(case, tmp_path, cache_dir):
    text, expected = CASES[case]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + text if case != "malformed" else text)
    with pytest.raises(DataError) as err:
        _prepare(tmp_path, cache_dir, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and expected in message


def test_non_utf8_file(tmp_path, cache_dir):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"prompt": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.jsonl:2.*UTF-8"):
        _prepare(tmp_path, cache_dir, path)


def test_bad_factual_flag_names_row(tmp_path, cache_dir):
    path = _write(
        tmp_path / "f.jsonl", [{**GOOD, "h_w": 0, "h_l": 1}, {**GOOD, "h_w": 2, "h_l": 0}]
    )
    with pytest.raises(DataError, match=r"f\.jsonl:2.*h_w"):
        _prepare(tmp_path, cache_dir, path, "method=factual_dpo", "method.delta=10")


def test_missing_flags_with_delta_is_an_error(tmp_path, cache_dir):
    path = _write(tmp_path / "nf.jsonl", [GOOD, GOOD])
    with pytest.raises(DataError, match="h_w"):
        _prepare(tmp_path, cache_dir, path, "method=factual_dpo", "method.delta=10")


def test_long_rows_are_filtered_and_counted(tmp_path, cache_dir):
    long = {**GOOD, "chosen": "word " * 400}
    path = _write(tmp_path / "long.jsonl", [GOOD] * 9 + [long])
    data = _prepare(tmp_path, cache_dir, path, "dataset.val_fraction=0")
    assert data.counts["data/train_filtered_too_long"] == 1
    assert len(data.train) == 9


def test_sft_only_rows_rejected_for_dpo(tmp_path, cache_dir):
    path = _write(tmp_path / "sft.jsonl", [GOOD, {**GOOD, "rejected": ""}])
    with pytest.raises(DataError, match="rejected"):
        _prepare(tmp_path, cache_dir, path)


def test_missing_gguf_is_named(tmp_path, cache_dir):
    cfg = compose_cfg(["model.gguf_file=nope.gguf"], tmp_path, cache_dir)
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        load_tokenizer(cfg.model, cfg.cache_dir)


def test_cli_prints_one_line_and_trains_nothing(tmp_path, cache_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{broken\n")
    proc = run_train(
        [
            "model=tiny",
            "dataset=local",
            f"dataset.path={path}",
            f"tracking.uri=sqlite:///{tmp_path}/m.db",
        ],
        tmp_path / "run",
        cache_dir,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{path}:2" in last
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "mlflow_run_id").exists()


def test_unknown_method_cli_lists_choices(tmp_path, cache_dir):
    proc = run_train(["method=dpoo"], tmp_path / "run", cache_dir)
    assert proc.returncode != 0 and "cita" in proc.stderr and "factual_dpo" in proc.stderr
