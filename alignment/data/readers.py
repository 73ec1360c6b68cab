"""Data files and hub datasets -> raw rows (dicts), and checked access to a row's fields.

Supported files: `.jsonl` (one object per line, streamed), `.json` (a list of objects, or an object
whose "data" key holds that list) and `.csv` (a header row, then one record per row); each may be
gzip-compressed with a trailing `.gz`. Every problem is a one-line `DataError` naming the file,
the row and, where there is one, the field. Row numbers are 1-based: the line number for `.jsonl`
and `.csv` (the CSV header is line 1), the position in the list for `.json` and hub datasets.
`load_records` picks a local file or the hub (`datasets` is imported only for the hub).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from alignment.data.types import DataError

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".csv")
Record = tuple[int, dict[str, Any]]  # (1-based row number, raw row)


def file_kind(path: str | Path) -> str | None:
    """The format of a data file by its name (".jsonl", ".json" or ".csv"), or None."""
    name = str(path).lower().removesuffix(".gz")
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def iter_records(path: str | Path) -> Iterator[Record]:
    """Yield (row number, row) for each record of a local data file; `.jsonl` is streamed.

    Raises:
        DataError: missing file, unsupported suffix, bad UTF-8, malformed JSON, non-object rows.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind is None:
        raise DataError(str(path), None, None, f"unsupported file type; expected one of {SUFFIXES}")
    if not path.is_file():
        raise DataError(str(path), None, None, "no such file")
    if kind == ".jsonl":
        yield from _jsonl_records(path)
    elif kind == ".json":
        yield from _json_records(path)
    else:
        yield from _csv_records(path)


def read_records(path: str | Path, limit: int | None = None) -> list[Record]:
    """The first `limit` records (all when None) of a local data file, with their row numbers."""
    return list(islice(iter_records(path), limit))


def read_rows(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` rows (all when None) of a local data file, as dicts."""
    return [row for _, row in read_records(path, limit)]


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _decode(raw: bytes, source: str, line: int, offset: int) -> str:
    """Decode UTF-8 (a leading BOM is dropped); `offset` is the byte offset of `raw` in the file."""
    try:
        return raw.decode("utf-8-sig" if offset == 0 else "utf-8")
    except UnicodeDecodeError as err:
        bad = offset + err.start
        line += raw[: err.start].count(b"\n")
        # For .gz files the offset counts bytes of the decompressed text.
        raise DataError(source, line, None, f"not valid UTF-8 (byte offset {bad})") from None


def _jsonl_records(path: Path) -> Iterator[Record]:
    source, offset = str(path), 0
    with _open_binary(path) as f:
        for line_no, raw in enumerate(f, start=1):
            text = _decode(raw, source, line_no, offset).strip()
            offset += len(raw)
            if not text:
                continue  # blank lines (often a trailing one) are not records
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(source, line_no, None, f"malformed JSON: {err.msg}") from None
            yield line_no, _as_object(row, source, line_no)


def _json_records(path: Path) -> Iterator[Record]:
    source = str(path)
    with _open_binary(path) as f:
        text = _decode(f.read(), source, 1, 0)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(source, err.lineno, None, f"malformed JSON: {err.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(source, None, None, 'expected a list of objects or {"data": [...]}')
    for i, row in enumerate(data, start=1):
        yield i, _as_object(row, source, i)


def _csv_records(path: Path) -> Iterator[Record]:
    source = str(path)
    with _open_binary(path) as f:
        text = _decode(f.read(), source, 1, 0)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise DataError(source, 1, None, "CSV file has no header row")
    start = reader.line_num + 1
    for values in reader:
        line, start = start, reader.line_num + 1
        if not values:
            continue
        if len(values) != len(header):
            problem = f"has {len(values)} values but the header has {len(header)} columns"
            raise DataError(source, line, None, problem)
        yield line, dict(zip(header, values, strict=True))


def _as_object(row: Any, source: str, line: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(source, line, None, f"expected a JSON object, got {type(row).__name__}")
    return row


# --- local file or hub dataset ---------------------------------------------------------------


def is_local(path: str) -> bool:
    """True when `path` is meant as a local data file (it exists, or has a data-file suffix)."""
    return Path(path).is_file() or file_kind(path) is not None


def load_records(
    path: str,
    *,
    name: str | None = None,
    data_dir: str | None = None,
    split: str = "train",
    revision: str | None = None,
    limit: int | None = None,
) -> tuple[str, list[Record]]:
    """(source name, the first `limit` records) of a local file or a hub dataset."""
    if is_local(path):
        return path, read_records(path, limit)
    import datasets  # slow import; only hub loading needs it

    if Path(path, "dataset_dict.json").is_file() or Path(path, "state.json").is_file():
        ds = datasets.load_from_disk(path)  # a `save_to_disk` directory
        ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    else:
        ds = datasets.load_dataset(
            path, name=name, data_dir=data_dir, split=split, revision=revision
        )
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    where = "/".join(p for p in (name, data_dir, split) if p)
    return f"{path}[{where}]", [(i, dict(row)) for i, row in enumerate(ds, start=1)]


# --- checked field access --------------------------------------------------------------------


def column(row: dict[str, Any], names: str | Sequence[str], source: str, line: int) -> Any:
    """The value of the first of `names` present in `row` (synonyms allowed).

    Raises:
        DataError: none of the names is a column; the message lists the columns present.
    """
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if name in row:
            return row[name]
    wanted = names[0] if len(names) == 1 else " or ".join(repr(n) for n in names)
    raise DataError(source, line, names[0], f"missing (wanted {wanted}); columns: {sorted(row)}")


def text_field(
    row: dict[str, Any],
    names: str | Sequence[str],
    source: str,
    line: int,
    *,
    allow_empty: bool = False,
) -> str:
    """A required string column; empty or whitespace-only is an error unless `allow_empty`."""
    value = column(row, names, source, line)
    name = _present_name(row, names)
    if value is None and allow_empty:
        return ""
    if not isinstance(value, str):
        raise DataError(source, line, name, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(source, line, name, "is empty")
    return value


def optional_text(
    row: dict[str, Any], names: str | Sequence[str], source: str, line: int
) -> str | None:
    """An optional string column (first of `names` present): absent, null or blank gives None."""
    names = (names,) if isinstance(names, str) else tuple(names)
    name = next((n for n in names if n in row), None)
    value = None if name is None else row[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise DataError(source, line, name, f"must be a string, got {type(value).__name__}")
    return value


def parse_flag(value: Any, source: str, line: int, name: str) -> int | None:
    """A 0/1 flag from an int, bool, 0.0/1.0 float or string ("0", "1", "true", "False", ...,
    as CSV files write them); None or "" gives None.

    Raises:
        DataError: any other value (2, 0.5, "yes", ...).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("0", "1", "0.0", "1.0", "false", "true"):
        return int(text in ("1", "1.0", "true"))
    raise DataError(source, line, name, f"must be 0 or 1, got {value!r}")


def string_list(row: dict[str, Any], name: str, source: str, line: int) -> tuple[str, ...]:
    """A required column holding a list of strings."""
    value = column(row, name, source, line)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(source, line, name, "must be a list of strings")
    return tuple(value)


def _present_name(row: dict[str, Any], names: str | Sequence[str]) -> str:
    names = (names,) if isinstance(names, str) else names
    return next(n for n in names if n in row)
