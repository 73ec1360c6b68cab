"""Smoke test of bench/grit_overhead.py: the --tiny mode runs adamw and grit and reports ratios."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "grit_overhead.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("grit_overhead", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_and_ratios_from_fake_runs(capsys):
    bench = _load_bench()
    runs = [
        {
            "optimizer": "adamw",
            "step_times": [9.0, 1.0, 1.0, 1.2],
            "peak_rss_mb": 100.0,
            "gpu_peak_mb": None,
        },
        {
            "optimizer": "grit",
            "step_times": [9.0, 1.1, 1.2, 1.2],
            "peak_rss_mb": 105.0,
            "gpu_peak_mb": None,
        },
    ]
    ratios = bench.report(bench.summarise(runs, skip=1), "cpu")
    assert ratios["step_time"] == pytest.approx(1.2 / 1.0)
    assert ratios["peak_rss"] == pytest.approx(1.05) and ratios["gpu_peak"] is None
    assert "goal met" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_bench_runs_both_optimizers(capsys):
    ratios = _load_bench().main(["--tiny"])
    assert all(math.isfinite(ratios[k]) and ratios[k] > 0 for k in ("step_time", "peak_rss"))
    # Not only timings: both runs start from the same weights and batch (equal first loss), and
    # GRIT's preconditioner changes the updates (a GRIT that ran as AdamW would end equal too).
    assert ratios["loss_gap_first"] < 1e-6
    assert ratios["loss_gap_last"] > 1e-6
    out = capsys.readouterr().out
    assert "grit/adamw: step time" in out and "run grit #0" in out
