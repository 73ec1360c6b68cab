"""Fixtures for the `slurm` tests: a real single-node Slurm cluster from scripts/slurm-local.sh.

`slurm_cluster` brings the cluster up once per session (installing Debian's packages if needed:
root only) and takes it down at the end, unless it was already up, which it then leaves running.
It skips only where this machine cannot run Slurm at all; a failing `up` is a test failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM_LOCAL = ROOT / "scripts" / "slurm-local.sh"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SLURM_LOCAL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _why_no_slurm() -> str | None:
    """Why this machine cannot run the local cluster, or None if it can."""
    if not sys.platform.startswith("linux"):
        return f"the local Slurm cluster needs Linux, not {sys.platform}"
    if os.geteuid() == 0:
        if shutil.which("slurmctld") or shutil.which("apt-get"):
            return None
        return "Slurm is not installed and there is no apt-get to install it"
    return (
        "scripts/slurm-local.sh needs root to install and start Slurm's daemons; "
        "run `sudo scripts/slurm-local.sh up` first to use the cluster from this user"
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A running local Slurm cluster with accounting (sacct) for the whole session."""
    was_up = _run("status", timeout=60).returncode == 0
    if not was_up:
        reason = _why_no_slurm()
        if reason:
            pytest.skip(reason)
        up = _run("up", timeout=900)
        if up.returncode != 0:
            pytest.fail(f"scripts/slurm-local.sh up failed ({up.returncode}):\n{up.stderr}")
    yield
    if not was_up:
        down = _run("down", timeout=120)
        assert down.returncode == 0, f"scripts/slurm-local.sh down failed:\n{down.stderr}"
