"""bench/truthfulqa_speed.py: its summary from fabricated timings (fast), and its tiny mode end to
end in a subprocess (slow), where both scoring paths must give the same MC1 and MC2. No timing
is asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import BENCH, REPO, bench_module, ratios

DELTA = re.compile(r"^delta (\S+) = (\S+)$", re.MULTILINE)


def test_report_prints_per_100_question_times_and_ratios(capsys) -> None:
    """50 questions: full 500 s -> 1000 s/100q, shared 25 s -> 50 s/100q, so shared/full = 0.05
    and shared/lm-eval = 50 / (34 * 60 / 817 * 100) = 50 / 249.69."""
    bench = bench_module("truthfulqa_speed")
    args = bench.parse_args(["--questions", "50"])
    scores = {"full": {"mc1": 0.25, "mc2": 0.4}, "shared": {"mc1": 0.25, "mc2": 0.4 + 2e-9}}
    bench.report(args, 50, "cpu", {"full": 500.0, "shared": 25.0}, scores)
    out = capsys.readouterr().out
    got = ratios(out)
    assert got["time shared/full"] == pytest.approx(0.05, abs=1e-3)
    assert got["time shared/lm_eval_reference"] == pytest.approx(50 / 249.69, abs=1e-3)
    deltas = dict(DELTA.findall(out))
    assert float(deltas["mc1"]) == 0.0 and float(deltas["mc2"]) == pytest.approx(2e-9)
    assert "1000" in out and "50" in out


@pytest.mark.slow
def test_tiny_mode_runs_and_both_paths_agree(cache_dir) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALIGNMENT_CACHE": str(cache_dir)}
    cmd = [sys.executable, str(BENCH / "truthfulqa_speed.py"), "--tiny"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = ratios(proc.stdout)
    assert got["time shared/full"] > 0 and got["time shared/lm_eval_reference"] > 0
    deltas = {k: float(v) for k, v in DELTA.findall(proc.stdout)}
    assert deltas["mc1"] == 0.0 and abs(deltas["mc2"]) < 1e-6
