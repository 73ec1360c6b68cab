"""bench/risk_preflight.py keeps working: its summary prints the measurement, the extrapolation and
parseable ratios (fast, from fabricated leg results), and its --tiny mode runs end to end (slow).
No timing is asserted."""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import assert_ratios, bench_module, ratios, run_script


def test_report_extrapolates_and_prints_ratios(capsys):
    bench = bench_module("risk_preflight")
    args = bench.parse_args(["--warmup", "1"])
    pre = {
        "phases": {"safety_batches": 1.0, "subspace": 20.0, "assess": 4.0},
        "backend": "vmap",
        "n_params": 61440,
        "tensors": 8,
        "rank": 9,
        "samples": 128,
        "refined": False,
        "collapse_step": None,
        "device": "cpu",
    }
    train = {"steps": [9.0, 2.0, 2.0, 2.0], "reference_s": 50.0, "n_train": 300}
    got = bench.report(args, pre, train)
    out = capsys.readouterr().out
    run = 50.0 + 200 * 2.0  # reference precompute + 200 x the median measured step
    assert got["preflight/run"] == pytest.approx(25.0 / run)
    assert ratios(out)["preflight_cached/run"] == pytest.approx(4.0 / run, abs=1e-3)
    assert "by VMAP over 61,440 parameters" in out and f"= {run:.4g} s" in out
    assert "goal preflight <= 10% of a 200-step run: met" in out


@pytest.mark.slow
def test_risk_preflight_tiny(cache_dir):
    out = run_script("risk_preflight.py", ["--tiny"], cache_dir)
    assert_ratios(out, {"preflight/run", "preflight_cached/run"})
    assert "per-sample gradients by VMAP" in out or "per-sample gradients by LOOP" in out
