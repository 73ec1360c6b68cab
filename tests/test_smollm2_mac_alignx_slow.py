"""`python train.py method=mac` and `method=alignx` on the real SmolLM2-135M on CPU (the README's
commands, shortened with train.max_steps=2), and every README command line of the two methods
composes as written (placeholders filled)."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, compose_cfg, run_train


def readme_commands() -> list[list[str]]:
    """The `python train.py ...` lines of README.md that use method=mac or method=alignx."""
    text = (REPO / "README.md").read_text()
    lines = re.findall(r"^python train\.py (.*?)(?:\s+#.*)?$", text, re.M)
    ours = [line for line in lines if re.search(r"\bmethod=(mac|alignx)\b", line)]
    return [shlex.split(line.replace("<run id>", "abc123")) for line in ours]


def test_readme_commands_compose(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 5
    for args in commands:
        cfg = compose_cfg(args, tmp_path, tmp_path)
        assert cfg.method.name in ("mac", "alignx")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mac", "alignx"])
def test_plain_command_trains_on_smollm2(method, tmp_path):
    cache = Path(os.environ.get("ALIGNMENT_CACHE_REAL", "~/.cache/alignment-lab")).expanduser()
    db = f"sqlite:///{tmp_path}/m.db"
    args = [f"method={method}", "train.max_steps=2", "train.samples=0", f"tracking.uri={db}"]
    proc = run_train(args, tmp_path / "run", cache, env={"OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = MlflowClient(db).get_run((tmp_path / "run" / "mlflow_run_id").read_text())
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "smollm2_135m"
    if method == "mac":
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["steps"] == 2 and summary["loss_start"] > 0
        assert (tmp_path / "run" / "mac_axis_attention.png").is_file()
    else:
        assert (tmp_path / "run" / "adapter" / "alignx.json").is_file()
        assert run.data.metrics["alignx/router_val_accuracy"] > 1 / 3
