"""Hydra entry for commands inside the package (`python -m alignment.risk`): compose
conf/train.yaml from the command line exactly as train.py does, convert once, run a task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from alignment.config import RunConfig, register_configs

CONF = Path(__file__).resolve().parents[2] / "conf"


def run_with_train_config(task: Callable[[RunConfig], object]) -> None:
    """Parse the command line's overrides (sys.argv) against conf/train.yaml and call task(cfg)."""
    register_configs()

    @hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
    def main(dcfg: DictConfig) -> object:
        return task(OmegaConf.to_object(dcfg))

    main()
