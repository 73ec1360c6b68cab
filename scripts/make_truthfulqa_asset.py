"""Write the shipped TruthfulQA copy, alignment/data/assets/truthfulqa_en.jsonl.gz.

Source: hitz-zentroa/truthfulqa-multi `data/en/validation.json` (Apache-2.0), all 817 English
questions of TruthfulQA (Lin et al., 2022, Apache-2.0), as kept in
../shared/data/truthfulqa-en.json.

The copy keeps, per question, the fields the evaluation reads (id, question, category, type,
best_answer, correct_answers, incorrect_answers, mc1_targets, mc2_targets), one JSON object a
line, in the source's order; `source`, `annotation` and `lang` are dropped. The gzip header
carries no time stamp, so rewriting it gives the same bytes (a test checks it).

    python scripts/make_truthfulqa_asset.py [path/to/truthfulqa-en.json]
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "truthfulqa-en.json"
TARGET = ROOT / "alignment" / "data" / "assets" / "truthfulqa_en.jsonl.gz"
FIELDS = (
    "id",
    "question",
    "category",
    "type",
    "best_answer",
    "correct_answers",
    "incorrect_answers",
    "mc1_targets",
    "mc2_targets",
)


def compact(rows: list[dict]) -> bytes:
    """The gzipped JSONL bytes of `rows` reduced to FIELDS (deterministic)."""
    text = "".join(json.dumps({k: r[k] for k in FIELDS}, ensure_ascii=False) + "\n" for r in rows)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else SOURCE
    rows = json.loads(source.read_text(encoding="utf-8"))
    TARGET.write_bytes(compact(rows))
    print(f"wrote {TARGET.relative_to(ROOT)}: {len(rows)} questions from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
