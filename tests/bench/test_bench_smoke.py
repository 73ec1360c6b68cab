"""The benchmarks of bench/ keep working: their summaries print parseable `ratio <name> = <float>`
lines (fast, from fabricated leg results), and each script's tiny mode runs end to end in a
subprocess, the way people call it (slow). No timing is asserted anywhere."""

from __future__ import annotations

import importlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
RATIO = re.compile(r"^ratio (.+?) = (\S+)$", re.MULTILINE)


def bench_module(name: str):
    """Import bench/<name>.py as the scripts run (bench/ first on sys.path, for `common`)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def ratios(stdout: str) -> dict[str, float]:
    return {name: float(value) for name, value in RATIO.findall(stdout)}


def fake_leg(step: float, tokens: int = 100, mem: float = 500.0, **extra) -> dict:
    return {
        "steps": [9.0, step, step],
        "loops": [float("nan"), step + 0.1, step + 0.1],
        "tokens": [tokens] * 3,
        "rows": [[10, 12]] * 3,
        "losses": [0.69, 0.68, 0.67],
        "peak_rss_mb": mem,
        "device": "cpu",
        **extra,
    }


# -- fast: the summaries --------------------------------------------------------------------------
def vs_trl_legs(**ours_extra) -> dict[str, list[dict]]:
    """Fabricated legs: stock TRL 2.0 s/step, TRL with precompute 1.25, ours 1.0 (cache) and 1.5
    (no cache); precomputes of 10 s (ours) and 25 s (TRL) over a 10-step epoch."""
    epoch = dict(n_train=40, steps_per_epoch=10)
    return {
        "trl": [fake_leg(2.0)],
        "trl_precompute": [fake_leg(1.25, precompute_s=25.0, model_hash_s=0.5, **epoch)],
        "ours": [fake_leg(1.0, mem=400.0, precompute_s=10.0, **epoch, **ours_extra)],
        "ours_noref": [fake_leg(1.5)],
    }


def test_vs_trl_report_prints_ratios(capsys):
    vs_trl = bench_module("vs_trl")
    args = vs_trl.parse_args(["--repeats", "1", "--warmup", "1"])
    vs_trl.report(args, vs_trl_legs())
    out = capsys.readouterr().out
    got = ratios(out)
    # The headline: (1.0 + 10/10) / (1.25 + 25/10); the model hash is not counted.
    headline = "step_time ours_incl_precompute/trl_precompute_incl_precompute"
    assert got[headline] == pytest.approx(2.0 / 3.75, abs=1e-3)
    assert got["step_time ours/trl_precompute"] == pytest.approx(0.8, abs=1e-3)
    assert got["step_time ours/trl"] == pytest.approx(0.5, abs=1e-3)
    assert got["step_time ours_noref/trl"] == pytest.approx(0.75, abs=1e-3)
    assert got["step_time ours_incl_precompute/trl"] == pytest.approx(
        (1.0 + 10.0 / 10) / 2.0, abs=1e-3
    )
    assert got["step_time trl_precompute/trl"] == pytest.approx(0.625, abs=1e-3)
    assert got["tokens_per_s ours/trl"] == pytest.approx(2.0, abs=1e-3)
    assert got["peak_mem ours/trl"] == pytest.approx(0.8, abs=1e-3)
    assert "same batches in every leg: yes" in out
    assert "reference precompute (TRL): 25 s for 40 pairs = 2.5 s/step" in out
    assert "0.6800000  0.6800000" in out  # the per-step loss table
    assert "losses agree" not in out  # checked in --tiny mode only


def test_vs_trl_tiny_fails_when_losses_differ(capsys):
    """In --tiny mode a wrong reference (any per-step loss gap > 1e-5, or a missing step) fails
    the benchmark; equal losses pass and say so."""
    vs_trl = bench_module("vs_trl")
    args = vs_trl.parse_args(["--tiny"])
    vs_trl.report(args, vs_trl_legs())
    assert "losses agree (ours vs trl_precompute, every step)" in capsys.readouterr().out
    for losses in ([0.69, 0.68, 0.67002], [0.69, 0.68]):
        with pytest.raises(SystemExit, match="losses of ours and trl_precompute differ"):
            vs_trl.report(args, vs_trl_legs(losses=losses))


def test_overhead_report_prints_ratios(capsys):
    overhead = bench_module("overhead")
    args = overhead.parse_args(["--repeats", "1", "--warmup", "1"])
    overhead.report(args, {"trainer": [fake_leg(1.1)], "bare": [fake_leg(1.0)]})
    got = ratios(capsys.readouterr().out)
    assert got["step trainer/bare"] == pytest.approx(1.1, abs=1e-3)
    assert got["loop trainer/bare"] == pytest.approx(1.2 / 1.1, abs=1e-3)


def test_gpu_qlora_report_mfu_and_ratios(capsys):
    gpu_qlora = bench_module("gpu_qlora")
    args = gpu_qlora.parse_args(["--size", "8b"])
    gpu = {
        "n_params": 1e9,
        "device_name": "NVIDIA H100 80GB HBM3",
        "peak_gpu_mb": 9 * 1024,
        "weights_gb": {"nf4": 3.7, "lora": 0.2, "other": 4.2},
    }
    adamw = fake_leg(1.0, tokens=4096, **gpu)
    grit = fake_leg(1.25, tokens=4096, **{**gpu, "peak_gpu_mb": 10 * 1024})
    gpu_qlora.report(args, {"adamw": adamw, "grit": grit})
    out = capsys.readouterr().out
    got = ratios(out)
    assert got["tokens_per_s grit/adamw"] == pytest.approx(0.8, abs=1e-3)
    assert got["peak_mem grit/adamw"] == pytest.approx(10 / 9, abs=1e-3)
    mfu = 8 * 1e9 * 4096 / 1.0 / 989e12  # (6 + 2 online reference) N T / step / peak
    assert gpu_qlora.summarise(args, adamw)["mfu"] == pytest.approx(mfu)
    assert "goal adamw" in out


def test_gpu_qlora_reports_a_skipped_leg(capsys):
    gpu_qlora = bench_module("gpu_qlora")
    args = gpu_qlora.parse_args(["--size", "tiny"])
    leg = fake_leg(
        1.0, n_params=1e5, device_name="cpu", weights_gb={"nf4": 0, "lora": 0, "other": 0}
    )
    gpu_qlora.report(args, {"adamw": leg, "grit": {"skipped": "ImportError: no grit"}})
    out = capsys.readouterr().out
    assert "grit: skipped (ImportError: no grit)" in out and not ratios(out)


def test_scaling_report_prints_efficiency(capsys):
    """1 rank at 100 tokens/s, 2 ranks at 180 (after one warm-up step): speedup 1.8, efficiency
    0.9."""
    scaling = bench_module("scaling")
    args = scaling.parse_args(["--size", "tiny", "--warmup", "1"])
    legs = [
        {"ranks": 1, "tokens_per_s": [5.0, 100.0, 100.0]},
        {"ranks": 2, "tokens_per_s": [7.0, 170.0, 180.0, 190.0]},
    ]
    scaling.report(args, legs)
    out = capsys.readouterr().out
    assert ratios(out) == {"scaling_efficiency 2/1": pytest.approx(0.9, abs=1e-3)}
    assert scaling.rank_counts(scaling.parse_args(["--size", "tiny"])) == [1, 2]
    assert scaling.rank_counts(scaling.parse_args(["--max-ranks", "4"])) == [1, 2, 4]


# -- slow: the tiny modes, end to end -------------------------------------------------------------
def run_script(script: str, args: list[str], cache: Path) -> str:
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def assert_ratios(stdout: str, expected: set[str]) -> None:
    got = ratios(stdout)
    assert expected <= set(got), stdout
    assert all(math.isfinite(v) and v > 0 for v in got.values()), got


@pytest.mark.slow
def test_vs_trl_tiny(cache_dir):
    out = run_script("vs_trl.py", ["--tiny"], cache_dir)
    assert_ratios(
        out,
        {
            "step_time ours_incl_precompute/trl_precompute_incl_precompute",
            "step_time ours/trl_precompute",
            "step_time ours/trl",
            "step_time ours_noref/trl",
            "step_time ours_incl_precompute/trl",
            "tokens_per_s ours/trl",
            "peak_mem ours/trl",
        },
    )
    assert "same batches in every leg: yes" in out
    assert "losses agree (ours vs trl_precompute, every step)" in out


@pytest.mark.slow
def test_overhead_tiny(cache_dir):
    out = run_script("overhead.py", ["--tiny"], cache_dir)
    assert_ratios(out, {"step trainer/bare", "loop trainer/bare"})
    assert "same batches: yes" in out


@pytest.mark.slow
def test_gpu_qlora_tiny(cache_dir):
    out = run_script("gpu_qlora.py", ["--size", "tiny"], cache_dir)
    assert "adamw" in out and "MFU" in out
    if "grit: skipped" not in out:
        assert_ratios(out, {"tokens_per_s grit/adamw", "peak_mem grit/adamw"})


@pytest.mark.slow
def test_scaling_tiny(cache_dir):
    out = run_script("scaling.py", ["--size", "tiny"], cache_dir)  # as the README shows it
    assert_ratios(out, {"scaling_efficiency 2/1"})
