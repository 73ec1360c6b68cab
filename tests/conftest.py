"""Shared fixtures: offline mode, a session cache for the tiny model, config composition, and a
runner for train.py in a subprocess (the way users call it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny model is all overhead: one thread avoids OpenMP oversubscription on busy machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (tiny model, tokenised data) for the whole session."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["ALIGNMENT_CACHE"] = str(path)
    return path


def compose_cfg(overrides: list[str], output_dir: Path, cache: Path):
    """A RunConfig composed exactly as train.py composes it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        dcfg = compose(
            "train", overrides=[f"output_dir={output_dir}", f"cache_dir={cache}", *overrides]
        )
    return OmegaConf.to_object(dcfg)


def run_train(
    args: list[str], run_dir: Path, cache: Path, env: dict | None = None, script: str = "train.py"
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1", **(env or {})}
    cmd = [sys.executable, script, *args, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=900)
