"""Train one alignment run: `python train.py method=cita optimizer=grit model=llama3_8b`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from alignment.config import RunConfig, register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(dcfg: DictConfig) -> float | None:
    cfg: RunConfig = OmegaConf.to_object(dcfg)
    from alignment.pipeline import run_training  # heavy imports after config errors surface

    return run_training(cfg)


if __name__ == "__main__":
    main()
