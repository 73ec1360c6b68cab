"""The grids compose as dry runs: cell counts, validation, and the compose time of the full grid."""

import subprocess
import time

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


def test_full_grid_compose_time(plan):
    """7 cells x 4 models x 10 values: 280 configs composed and validated in under 30 s."""
    start = time.perf_counter()
    jobs = plan(["experiment=paper_grid", "seed=range(10)"])
    elapsed = time.perf_counter() - start
    assert len(jobs) == 280
    assert elapsed < 30, f"{elapsed:.1f} s"


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
