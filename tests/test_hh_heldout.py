"""experiments/hh_heldout.py: its metrics by hand, its split, and a tiny end-to-end run."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, SHARED_DATA

SCRIPT = REPO / "experiments" / "hh_heldout.py"
HH_FILE = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"


def _module():
    spec = importlib.util.spec_from_file_location("hh_heldout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metrics_by_hand():
    """4 pairs. Base log-probs (chosen, rejected): (-1,-2) (-2,-1) (-3,-4) (-4,-3): the base
    prefers chosen in pairs 0 and 2, likelihood accuracy 2/4. Trained: chosen +1 and rejected -1
    in pairs 0 and 1, unchanged in 2, chosen -1 in 3. Likelihood: (0,-3) yes, (-1,-2) yes,
    (-3,-4) yes, (-5,-3) no: 3/4, gain +1/4. Implicit reward margins beta*((c-bc)-(r-br)) with
    beta 0.1: 0.2, 0.2, 0 (a tie, half), -0.1: (1 + 1 + 0.5 + 0)/4 = 0.625, gain 0.125."""
    m = _module()
    base = np.array([-1.0, -2, -3, -4]), np.array([-2.0, -1, -4, -3])
    trained = np.array([0.0, -1, -3, -5]), np.array([-3.0, -2, -4, -3])
    out = m.metrics(base, trained, beta=0.1, boot=200)
    assert out["likelihood_accuracy_base"] == 0.5
    assert out["likelihood_accuracy_trained"] == 0.75
    assert out["likelihood_accuracy_gain"] == 0.25
    assert out["reward_accuracy_trained"] == pytest.approx(0.625)
    assert out["reward_accuracy_gain"] == pytest.approx(0.125)
    assert out["reward_margin_mean"] == pytest.approx((0.2 + 0.2 + 0 - 0.1) / 4)
    assert out["reward_accuracy_base"] == 0.5 and out["n_pairs"] == 4
    for key in ("likelihood_accuracy_trained", "reward_accuracy_gain"):
        assert out[f"{key}_ci_low"] <= out[key] <= out[f"{key}_ci_high"]
    assert out["likelihood_accuracy_trained_ci_low"] < out["likelihood_accuracy_trained_ci_high"]


def test_missing_data_file_stops_with_a_clear_message(tmp_path):
    missing = tmp_path / "hh.jsonl.gz"
    with pytest.raises(SystemExit, match=r"hh\.jsonl\.gz not found.*--data"):
        _module().main(["--data", str(missing), "--out", str(tmp_path / "out")])


def _fake_hh(path, n: int) -> None:
    turn = "\n\nHuman: How do I {q}?\n\nAssistant: {a}"
    rows = [
        {
            "chosen": turn.format(q=f"bake bread {i}", a="Knead, rest, bake."),
            "rejected": turn.format(q=f"bake bread {i}", a="No."),
        }
        for i in range(n)
    ]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("source", ["synthetic", pytest.param("shared", marks=pytest.mark.slow)])
def test_tiny_mode_end_to_end(source, tmp_path, cache_dir):
    if source == "shared" and not HH_FILE.is_file():
        pytest.skip(f"{HH_FILE} is absent (real HH-RLHF rows for tests)")
    data = HH_FILE if source == "shared" else tmp_path / "hh.jsonl.gz"
    if source == "synthetic":
        _fake_hh(data, 30)
    db = f"sqlite:///{tmp_path}/m.db"
    args = ["--data", str(data), "--model", "tiny", "--train-rows", "16", "--heldout-rows", "8"]
    args += ["--steps", "2", "--batch-size", "2", "--grad-accum", "1", "--threads", "1"]
    args += ["--max-length", "4096", "--eval-max-length", "4096", "--boot", "50"]
    args += ["--uri", db, "--out", str(tmp_path / "out"), "--cache-dir", str(cache_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ALIGNMENT_CACHE": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    train = (out / "train.jsonl").read_text().splitlines()
    held = (out / "heldout.jsonl").read_text().splitlines()
    with gzip.open(data, "rt", encoding="utf-8") as fh:
        source_rows = [json.loads(line) for line in fh]
    assert [json.loads(r) for r in train] == source_rows[:16]
    assert [json.loads(r) for r in held] == source_rows[-8:]
    scores = [json.loads(r) for r in (out / "heldout_scores.jsonl").read_text().splitlines()]
    run_id = (out / "run" / "mlflow_run_id").read_text()
    metrics = MlflowClient(db).get_run(run_id).data.metrics
    assert metrics["heldout/n_pairs"] == len(scores) > 0
    assert metrics["heldout/n_pairs"] + metrics["heldout/dropped_long"] <= 8
    base = np.mean([s["base_chosen"] > s["base_rejected"] for s in scores])
    trained = np.mean([s["trained_chosen"] > s["trained_rejected"] for s in scores])
    assert metrics["heldout/likelihood_accuracy_base"] == pytest.approx(base)
    assert metrics["heldout/likelihood_accuracy_trained"] == pytest.approx(trained)
    assert "train/loss" in metrics and "likelihood accuracy" in proc.stdout
