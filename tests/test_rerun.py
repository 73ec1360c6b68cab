"""`python train.py rerun=<run id>`: the run's logged overrides, recomposed, into a new run
tagged rerun_of=<id> with its own output directory; on CPU the loss curve equals the original's
within 1e-6. Differences in code or config are warned about, one line each."""

from __future__ import annotations

import yaml
from mlflow.tracking import MlflowClient

from alignment.rerun import code_warnings, config_differences, expand_rerun
from tests.conftest import run_train

SHA, OTHER = "a" * 40, "b" * 40


def test_no_rerun_leaves_the_command_alone():
    argv = ["train.py", "model=tiny", "--cfg", "job"]
    assert expand_rerun(argv) == argv


def test_code_warnings():
    clean = {"git_commit": SHA, "git_dirty": "false", "rerun_of_id": "r1"}
    assert code_warnings(clean, SHA, "false") == []
    (moved,) = code_warnings(clean, OTHER, "false")
    assert f"r1 was trained at commit {SHA[:12]}, this checkout is at {OTHER[:12]}" in moved
    assert f"git worktree add ../rerun-{SHA[:8]} {SHA}" in moved
    assert len(code_warnings({**clean, "git_dirty": "true"}, SHA, "true")) == 2
    assert "unknown" in code_warnings({"git_commit": "unknown"}, SHA, "false")[0]


def test_config_differences_leave_out_what_a_rerun_changes_by_design():
    logged = {"method.beta": "0.2", "output_dir": "a", "rerun": "None", "tracking.uri": "x"}
    now = {"method.beta": "0.1", "output_dir": "b", "rerun": "r1", "tracking.uri": "y", "new": "1"}
    assert config_differences(logged, now) == ["method.beta", "new"]


def test_rerun_trains_the_same_curve_into_a_new_run(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/m.db"
    original = [
        "model=tiny",
        "method=dpo",
        "method.beta=0.2",
        "seed=3",
        "train.max_steps=6",
        "train.batch_size=2",
        "train.samples=0",
        "tracking.experiment=rerun",
        f"tracking.uri={db}",
    ]
    first = run_train(original, tmp_path / "first", cache_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    run_id = (tmp_path / "first" / "mlflow_run_id").read_text()

    again = run_train([f"rerun={run_id}", f"tracking.uri={db}"], tmp_path / "again", cache_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    printed = again.stdout + again.stderr
    assert f"rerun of {run_id}" in printed and "config composed now differs" not in printed
    new_id = (tmp_path / "again" / "mlflow_run_id").read_text()
    assert new_id != run_id

    client = MlflowClient(db)
    new = client.get_run(new_id)
    assert new.data.tags["rerun_of"] == run_id and new.info.status == "FINISHED"
    assert new.data.params["method.beta"] == "0.2" and new.data.params["seed"] == "3"
    overrides = yaml.safe_load((tmp_path / "again" / ".hydra" / "overrides.yaml").read_text())
    assert "method.beta=0.2" in overrides and f"rerun={run_id}" in overrides

    def curve(rid):
        return [(m.step, m.value) for m in client.get_metric_history(rid, "train/loss")]

    a, b = curve(run_id), curve(new_id)
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3, 4, 5, 6]
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b, strict=True)) < 1e-6
    assert len({round(v, 6) for _, v in a}) > 1  # the curve moves: the comparison means something
