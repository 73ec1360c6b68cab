"""Hydra entry for commands inside the package (`python -m alignment.risk`): compose
conf/train.yaml from the command line exactly as train.py does, check it the same way (one-line
errors naming the key), convert once, run a task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from alignment.config import RunConfig, register_configs
from alignment.config.cli import cli, to_config

CONF = Path(__file__).resolve().parents[2] / "conf"


def run_with_train_config(task: Callable[[RunConfig], object]) -> None:
    """Parse the command line's overrides (sys.argv) against conf/train.yaml and call task(cfg)."""
    register_configs()

    @hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
    def main(dcfg: DictConfig) -> object:
        return task(to_config(dcfg))

    cli(main)
