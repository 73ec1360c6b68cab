"""Fail when a module in alignment/ passes 400 lines or a function passes 60 (the house style).

Entry points (train.py, evaluate.py) must stay under 80 lines.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"file": 400, "function": 60, "entry": 80}


def problems() -> list[str]:
    found = []
    for path in sorted((ROOT / "alignment").rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > LIMITS["file"]:
            found.append(f"{path.relative_to(ROOT)}: {len(lines)} lines > {LIMITS['file']}")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > LIMITS["function"]:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}() {n} lines")
    for name in ("train.py", "evaluate.py"):
        entry = ROOT / name
        if entry.is_file() and len(entry.read_text().splitlines()) > LIMITS["entry"]:
            found.append(f"{name}: longer than {LIMITS['entry']} lines")
    return found


if __name__ == "__main__":
    issues = problems()
    print("\n".join(issues) or "sizes ok")
    sys.exit(1 if issues else 0)
