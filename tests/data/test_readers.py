"""Local file readers: formats, row numbers, and one-line errors naming file, row and field."""

from __future__ import annotations

import gzip
import json

import pytest

from alignment.data.readers import (
    column,
    file_kind,
    load_records,
    optional_text,
    parse_flag,
    read_records,
    read_rows,
    string_list,
    text_field,
)
from alignment.data.types import DataError


def write_jsonl(path, rows, blank_after: int | None = None):
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_rows_carry_line_numbers_and_skip_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"x": 1}, {"x": 2}, {"x": 3}], blank_after=1)
    assert read_records(path) == [(1, {"x": 1}), (3, {"x": 2}), (4, {"x": 3})]
    assert read_rows(path, limit=2) == [{"x": 1}, {"x": 2}]


def test_jsonl_gz_and_bom(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"x": "é"}\n{"x": "b"}\n')
    assert read_rows(path) == [{"x": "é"}, {"x": "b"}]
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"x": 1}\n')
    assert read_rows(bom) == [{"x": 1}]


def test_json_list_and_data_wrapper(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps([{"x": 1}, {"x": 2}]))
    (tmp_path / "d.json").write_text(json.dumps({"data": [{"x": 1}], "version": 2}))
    assert read_records(tmp_path / "l.json") == [(1, {"x": 1}), (2, {"x": 2})]
    assert read_rows(tmp_path / "d.json") == [{"x": 1}]


def test_csv_rows_numbered_by_file_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('prompt,chosen\n"multi\nline",yes\n\nq2,a2\n', encoding="utf-8")
    assert read_records(path) == [
        (2, {"prompt": "multi\nline", "chosen": "yes"}),
        (5, {"prompt": "q2", "chosen": "a2"}),
    ]


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"x": 1}\n{"x": 2}\n{"x": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON") as err:
        read_rows(path)
    assert err.value.row == 3 and "\n" not in str(err.value)


def test_reading_stops_at_limit_before_a_later_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"x": 1}\n{"x": 2}\nnot json\n', encoding="utf-8")
    assert read_rows(path, limit=2) == [{"x": 1}, {"x": 2}]


def test_non_utf8_names_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"x": "a"}\n{"x": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not valid UTF-8 \(byte offset 21\)"):
        read_rows(path)
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"prompt\nok\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin1\.csv:3: not valid UTF-8 \(byte offset 13\)"):
        read_rows(csv_path)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.jsonl", None, "no such file"),
        ("data.txt", "x", "unsupported file type"),
        ("scalar.json", "3", "expected a list of objects"),
        ("list.jsonl", "[1, 2]\n", "expected a JSON object, got list"),
        ("short.csv", "a,b\n1\n", "has 1 values but the header has 2 columns"),
        ("bad.json", '[{"x": 1},\n {"x": }]', "malformed JSON"),
    ],
)
def test_file_errors_are_one_line_and_name_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_rows(path)
    message = str(err.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_file_kind():
    assert file_kind("x/train.JSONL.gz") == ".jsonl"
    assert file_kind("a.csv") == ".csv"
    assert file_kind("Anthropic/hh-rlhf") is None


def test_load_records_reads_local_files_without_the_hub(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"x": 1}, {"x": 2}])
    assert load_records(str(path), limit=1) == (str(path), [(1, {"x": 1})])


def test_column_lists_present_columns():
    with pytest.raises(DataError, match=r"f\.csv:4: field 'prompt' missing.*\['a', 'b'\]"):
        column({"b": 1, "a": 2}, "prompt", "f.csv", 4)
    assert column({"question": "q"}, ("prompt", "question"), "f", 1) == "q"


def test_text_field_checks_type_and_emptiness():
    row = {"chosen": "  ", "n": 3, "ok": "yes", "none": None}
    with pytest.raises(DataError, match=r"f:2: field 'chosen' is empty"):
        text_field(row, "chosen", "f", 2)
    with pytest.raises(DataError, match=r"f:2: field 'n' must be a string, got int"):
        text_field(row, "n", "f", 2)
    assert text_field(row, "chosen", "f", 2, allow_empty=True) == "  "
    assert text_field(row, "none", "f", 2, allow_empty=True) == ""
    assert text_field(row, ("missing", "ok"), "f", 2) == "yes"
    assert optional_text(row, "chosen", "f", 2) is None
    assert optional_text(row, "absent", "f", 2) is None
    with pytest.raises(DataError, match="field 'n' must be a string"):
        optional_text(row, "n", "f", 2)


def test_string_list():
    assert string_list({"a": ["x", "y"]}, "a", "f", 1) == ("x", "y")
    with pytest.raises(DataError, match=r"f:1: field 'a' must be a list of strings"):
        string_list({"a": ["x", 2]}, "a", "f", 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1, 1),
        (True, 1),
        (False, 0),
        ("0", 0),
        (" 1 ", 1),
        (1.0, 1),
        (0.0, 0),
        ("1.0", 1),
        ("True", 1),
        ("false", 0),
        (None, None),
        ("", None),
    ],
)
def test_parse_flag_accepts(value, expected):
    assert parse_flag(value, "f", 1, "h_w") == expected


@pytest.mark.parametrize("value", [2, 0.5, -1, "yes", "2", [1]])
def test_parse_flag_rejects(value):
    with pytest.raises(DataError, match=r"f:7: field 'h_l' must be 0 or 1"):
        parse_flag(value, "f", 7, "h_l")
