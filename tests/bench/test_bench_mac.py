"""bench/mac_overhead.py: its summary prints parseable ratios and the circuit's analytic memory
(fast, from fabricated legs); its tiny mode runs end to end (slow). No timing is asserted."""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import assert_ratios, bench_module, fake_leg, ratios, run_script


def test_mac_overhead_report_prints_ratios_and_the_circuit_memory(capsys):
    mac_overhead = bench_module("mac_overhead")
    args = mac_overhead.parse_args(["--repeats", "1", "--warmup", "1"])
    shape = {"trainable": 10, "hidden": 576, "layers": 30}
    sft = fake_leg(2.0, tokens=300, mem=1000.0, **shape)
    mac = fake_leg(1.5, tokens=300, mem=1100.0, **shape)
    mac_overhead.report(args, {"sft": [sft], "mac": [mac]})
    out = capsys.readouterr().out
    got = ratios(out)
    assert got["step_time mac/sft"] == pytest.approx(0.75, abs=1e-3)
    assert got["tokens_per_s mac/sft"] == pytest.approx(2.0 / 1.5, abs=1e-3)
    assert got["peak_mem mac/sft"] == pytest.approx(1.1, abs=1e-3)
    # 51,916,800 parameters: 198 MiB of fp32 weights, 792 MiB with gradients and AdamW moments
    assert "MAC circuit at H=4096: 51.9 M parameters, fp32 weights 198 MiB" in out
    assert "792 MiB" in out and "MAC circuit at H=576" in out


def test_circuit_memory_by_hand():
    """H = 4096, d = 64: 51,916,800 params x 4 B = 207,667,200 B = 198.05 MiB; x 16 = 792.2 MiB;
    activations 4 (4 * 4096 + 12 * 64 + 9) = 68,644 B per token."""
    c = bench_module("mac_overhead").circuit_memory(4096)
    assert c["params"] == 51_916_800
    assert c["weights_mib"] == pytest.approx(198.05, abs=0.01)
    assert c["train_state_mib"] == pytest.approx(792.2, abs=0.1)
    assert c["act_bytes_per_token"] == 68_644


@pytest.mark.slow
def test_mac_overhead_tiny(cache_dir):
    out = run_script("mac_overhead.py", ["--tiny"], cache_dir)
    assert_ratios(out, {"step_time mac/sft", "tokens_per_s mac/sft", "peak_mem mac/sft"})
