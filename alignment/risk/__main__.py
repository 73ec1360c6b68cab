"""`python -m alignment.risk <train.py overrides>`: the risk preflight of that run, alone.

    python -m alignment.risk model=tiny method=dpo optimizer.lr=1e-3

Nothing is trained. The forecast, sensitivity map and arrays land in
outputs/preflight/<model>/<method>-<optimizer>/<overrides>/risk/ and in a new MLflow run (tag
kind=preflight); the summary line is logged. Give hydra.run.dir=... to write elsewhere.
"""

from __future__ import annotations

import sys

from alignment.config import RunConfig
from alignment.config.app import run_with_train_config

RUN_DIR = (
    "hydra.run.dir=outputs/preflight/${model.name}/${method.name}-${optimizer.name}/"
    "${hydra:job.override_dirname}"
)


def task(cfg: RunConfig) -> None:
    from alignment.data.types import DataError
    from alignment.risk.params import RiskInputError
    from alignment.risk.standalone import preflight_only

    try:
        preflight_only(cfg)
    except (DataError, FileNotFoundError, RiskInputError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    if not any(arg.startswith("hydra.run.dir=") for arg in sys.argv[1:]):
        sys.argv.append(RUN_DIR)  # not the training run's directory: it holds no training state
    run_with_train_config(task)
