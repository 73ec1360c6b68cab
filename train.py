"""Train one alignment run: `python train.py method=cita optimizer=grit model=llama3_8b`.

`python train.py --help` lists the config groups; `--cfg job` prints the composed config;
`python train.py rerun=<MLflow run id>` trains a logged run again, into a new run.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from alignment.config import RunConfig, register_configs
from alignment.config.cli import ConfigError, cli, to_config

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(dcfg: DictConfig) -> float | None:
    try:
        cfg: RunConfig = to_config(dcfg)  # every schema check; one line naming the key
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    # Heavy imports only after the config is known to be valid.
    from alignment.distributed import failure_line
    from alignment.errors import ONE_LINE_ERRORS
    from alignment.pipeline import run_training
    from alignment.rerun import check_rerun

    try:
        if cfg.rerun:
            check_rerun(cfg)  # warns when the code or the config differ from the original's
        return run_training(cfg)
    except ONE_LINE_ERRORS as err:  # bad input, a non-finite step, ...: what and where
        raise SystemExit(f"error: {err}") from None
    except Exception as err:
        # Another rank of a multi-rank job died: one line, and a non-zero exit (no hang).
        line = failure_line(err)
        if line is None:
            raise
        raise SystemExit(f"error: {line}") from None


if __name__ == "__main__":
    from alignment.rerun import expand_rerun

    cli(main, prepare=expand_rerun)  # rerun=<id> becomes that run's own overrides
