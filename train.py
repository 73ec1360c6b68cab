"""Train one alignment run: `python train.py method=cita optimizer=grit model=llama3_8b`.

`python train.py --help` lists the config groups; `--cfg job` prints the composed config.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from alignment.config import RunConfig, register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(dcfg: DictConfig) -> float | None:
    cfg: RunConfig = OmegaConf.to_object(dcfg)
    # Heavy imports only after the config is known to be valid.
    from alignment.config.checks import ConfigError
    from alignment.data.types import DataError
    from alignment.pipeline import run_training

    try:
        return run_training(cfg)
    except (DataError, FileNotFoundError, ConfigError) as err:
        # Bad input: one line naming the file, row and field; nothing has been trained yet.
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
