"""The grids compose as dry runs: cell counts, validation, and the compose time of the full grid."""

import subprocess

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def plan():
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from plan_sweep import plan

    return plan


def test_paper_grid_is_7_cells_by_4_models(plan):
    jobs = plan(["experiment=paper_grid"])
    assert len(jobs) == 28
    cells = {o.split("=")[1] for job in jobs for o in job if o.startswith("+experiment")}
    assert len(cells) == 7 and "grid_cita_grit" in cells and "grid_baseline" in cells


def test_full_grid_composes(plan):
    """7 cells x 4 models x 10 seeds: 280 configs composed and validated (no timing asserted:
    plan_sweep prints its own compose time)."""
    jobs = plan(["experiment=paper_grid", "seed=range(10)"])
    assert len(jobs) == 280 and len({tuple(sorted(j)) for j in jobs}) == 280


def test_delta_grid(plan):
    jobs = plan(["experiment=factual_dpo_delta_grid", "model=llama3_8b,mistral_7b"])
    assert len(jobs) == 20
    assert {o for job in jobs for o in job if o.startswith("method.delta=")} == {
        f"method.delta={d}" for d in (0, 2, 4, 6, 8, 10, 20, 30, 50, 100)
    }


def test_a_bad_cell_fails_the_dry_run(plan):
    with pytest.raises(Exception, match="beta"):
        plan(["experiment=paper_grid", "method.beta=-1"])


def test_multirun_sh_refuses_bad_arguments():
    proc = subprocess.run(
        ["bash", "multirun.sh", "nowhere"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_a_plain_sweep_without_an_experiment(plan):
    """The README's sweep: no experiment, so no sweep list of its own (it used to crash)."""
    jobs = plan(["method=dpo,cita", "optimizer=adamw,grit", "model=llama3_8b,mistral_7b"])
    assert len(jobs) == 8
    assert len(plan(["method=dpo"])) == 1


def test_plan_sweep_help_and_multirun_dry_run_submit_nothing(tmp_path):
    import sys

    out = subprocess.run(
        [sys.executable, "scripts/plan_sweep.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "Dry run of a sweep" in out.stdout
    env = {**__import__("os").environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", "multirun.sh", "--dry-run", "local", "all", "model=tiny"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dry run only: 17 cells (local), nothing submitted" in proc.stdout  # 7 + 10 deltas
    assert not (REPO / "multirun").exists() or not any((REPO / "multirun").iterdir())


def test_run_leaf_adds_the_store_only_when_it_is_not_the_default():
    from alignment.config import run_leaf

    assert run_leaf("model=tiny", "sqlite:///mlflow.db", "alignment") == "model=tiny"
    other = run_leaf("model=tiny", "sqlite:///other.db", "alignment")
    assert other.startswith("model=tiny@store-") and len(other) == len("model=tiny@store-") + 8
    assert other != run_leaf("model=tiny", "sqlite:///mlflow.db", "exp2")
    assert run_leaf("", "http://u:secret@host:5000", "alignment").startswith("@store-")
    assert "secret" not in run_leaf("", "http://u:secret@host:5000", "alignment")


def test_gpus_per_cell_and_gpu_hours(plan):
    """2 nodes x 8 tasks, one GPU each, 10 h limit: 16 GPUs a cell, 28 cells <= 4480 GPU-hours."""
    from plan_sweep import gpu_line, resources

    layout = ["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=8"]
    res = resources([*layout, "hydra.launcher.gpus_per_node=8", "hydra.launcher.timeout_min=600"])
    assert res == {"launcher": "SlurmLauncher", "ranks": 16, "gpus": 16, "hours": 10.0}
    assert gpu_line(28, res) == (
        "GPUs per cell: 16 (16 ranks, SlurmLauncher); at most 4480 GPU-hours for 28 cells "
        "at the 10.0 h limit"
    )
    assert resources(["model=tiny"])["launcher"] == "basic"
    with pytest.raises(ValueError, match="one task per GPU"):
        resources([*layout, "hydra.launcher.gpus_per_node=4"])


def readme_multi_gpu_commands() -> list[str]:
    """The commands of the README's "Several GPUs or nodes per run" block, continuations joined."""
    text = (REPO / "README.md").read_text()
    block = text.split("### Several GPUs or nodes per run", 1)[1].split("```bash", 1)[1]
    lines = block.split("```", 1)[0].replace("\\\n", " ").splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.strip()]


def test_readme_multi_gpu_examples_pass_the_dry_run(plan):
    """The README's GPU examples cannot run on a CPU machine; each composes every cell and has a
    valid launcher layout (the checks a sweep makes before it submits), with the GPUs it says."""
    from plan_sweep import resources

    commands = readme_multi_gpu_commands()
    assert len(commands) == 5 and commands[0].startswith("torchrun --nproc_per_node=4 train.py")
    gpus = []
    for command in commands:
        words = command.split()
        overrides = [w for w in words if "=" in w and not w.startswith("-")]
        assert plan(overrides)
        gpus.append(resources(overrides)["gpus"])
    assert gpus == [1, 4, 16, 4, 0]  # torchrun's 4 GPUs are one basic-launcher cell here
