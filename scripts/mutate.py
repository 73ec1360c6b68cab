#!/usr/bin/env python
"""Mutation testing: break one line of maths or one safeguard at a time, and check that the tests
that should notice do fail.

    python scripts/mutate.py                      # every mutation; exit 1 if any survives
    python scripts/mutate.py --only dpo_sign,cita_drop_lambda_kl
    python scripts/mutate.py --list               # the mutations and their test selections

Each mutation (MUTATIONS, scripts/mutations.py) is a small named source edit: a file, the exact
text to replace, which must occur exactly once (a stale mutation is an error, never a pass), the
new text, and the tests that should kill it. The edits are made in a scratch copy of the
repository, never in the checkout: the working tree's tracked and untracked, non-ignored files
(`git ls-files -co --exclude-standard`, so uncommitted edits are mutated too) copied to a
temporary directory, where each mutation is applied, tested and reverted in turn. The tests run
there as `python -m pytest -x -m "not slow and not slurm"` with OMP_NUM_THREADS=1: fast tests,
stopping at the first failure. A mutation is killed when its selection fails, and survives when
it passes.

Before any mutation, every selection runs once unmutated (the baseline): a test that already
fails would "kill" every mutation, so a failing baseline stops the script (exit 2), as does a
mutation whose text is not found or whose file no longer compiles.

Prints one row per mutation: name, KILLED or SURVIVED, the first failing test, seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutations import MUTATIONS, Mutation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYTEST = ["-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider"]
MARKERS = ["-m", "not slow and not slurm"]
FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.M)


def scratch_copy(dest: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored) under `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():  # a deleted-but-tracked file is listed too
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def run_tests(root: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, str, float]:
    """(pytest's exit code, its output, seconds) for `tests` in the scratch copy."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(root),  # the scratch copy's `alignment`, not an installed one
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("ALIGNMENT_CACHE", None)  # each pytest session builds its own cache
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, *PYTEST, *MARKERS, *tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        return -1, out, time.monotonic() - start
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def apply(root: Path, m: Mutation) -> str:
    """Apply `m` in the scratch copy; returns the file's original text."""
    path = root / m.path
    original = path.read_text()
    found = original.count(m.old)
    if found != 1:
        raise SystemExit(f"error: mutation {m.name}: its text occurs {found} times in {m.path}")
    mutated = original.replace(m.old, m.new)
    try:
        compile(mutated, str(path), "exec")
    except SyntaxError as err:
        raise SystemExit(f"error: mutation {m.name}: {m.path} no longer compiles: {err}") from None
    path.write_text(mutated)
    return original


def verdict(code: int, output: str) -> tuple[str, str]:
    """(KILLED | SURVIVED | ERROR, the first failing test or a reason)."""
    if code == 0:
        return "SURVIVED", "-"
    if code == -1:
        return "KILLED", "timeout"
    if code == 5:
        return "ERROR", "no test collected (a wrong selection)"
    failed = FAILED.findall(output)
    if code in (1, 2) and failed:
        return "KILLED", failed[0]
    return "ERROR", f"pytest exit {code}: " + " ".join(output.strip().splitlines()[-2:])[:200]


def baseline(root: Path, chosen: list[Mutation], timeout: int) -> None:
    tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    print(f"baseline: {len(tests)} selections unmutated ...", flush=True)
    code, output, seconds = run_tests(root, tests, timeout * 4)
    if code != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise SystemExit(f"error: the unmutated tests fail (exit {code}); fix them first:\n{tail}")
    print(f"baseline: passed in {seconds:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM becomes SystemExit: subprocess.run then kills the running pytest, and the
    # scratch copy is removed, as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutation names")
    parser.add_argument("--list", action="store_true", help="print the mutations and stop")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutation")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"error: unknown mutations {sorted(unknown)}; see --list")
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    if args.list:
        for m in chosen:
            print(f"{m.name:38} {m.path}: {m.why}\n{'':38} tests: {' '.join(m.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        root = scratch_copy(Path(tmp))
        if not args.no_baseline:
            baseline(root, chosen, args.timeout)
        rows = []
        for m in chosen:
            original = apply(root, m)
            try:
                code, output, seconds = run_tests(root, m.tests, args.timeout)
            finally:
                (root / m.path).write_text(original)
            status, test = verdict(code, output)
            rows.append((m.name, status, test, seconds))
            print(f"{m.name:38} {status:8} {seconds:6.0f} s  {test}", flush=True)
    return report(rows)


def report(rows: list[tuple[str, str, str, float]]) -> int:
    print("\n| mutation | result | killed by | seconds |\n|---|---|---|---|")
    for name, status, test, seconds in rows:
        print(f"| {name} | {status} | {test} | {seconds:.0f} |")
    survived = [r[0] for r in rows if r[1] == "SURVIVED"]
    errors = [r[0] for r in rows if r[1] == "ERROR"]
    print(f"\n{len(rows) - len(survived) - len(errors)} of {len(rows)} mutations killed")
    if survived:
        print(f"SURVIVED: {', '.join(survived)}")
    if errors:
        print(f"ERROR (no verdict): {', '.join(errors)}")
    return 1 if survived else (2 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
