"""Evaluate one model and log to MLflow (AQI, TruthfulQA MC1/MC2, judge metrics).

  python evaluate.py run=<mlflow run id> eval=[aqi,truthfulqa]      (into the training run)
  python evaluate.py adapter=<dir> model=<name> eval=[aqi]
  python evaluate.py method=baseline model=<name>                   (the base model, its own run)

`adapter=` takes any path as typed, `=` and `,` included (it is quoted for Hydra here). Judge
metrics (eval=[...,judge]) need a judge model: eval.judge.model=<hub id or local dir>.
`python evaluate.py --help` lists the config groups; `--cfg job` prints the composed config.
Exit status 1 with one `error:` line when the target cannot be evaluated (nothing is logged) or
a suite failed (the other suites' results are in the run, which says which suite failed).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from alignment.config import register_configs
from alignment.config.cli import ConfigError, cli, to_config
from alignment.config.evaluate import EvaluateConfig, quote_path_overrides

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(dcfg: DictConfig) -> float | None:
    try:
        cfg: EvaluateConfig = to_config(dcfg)  # every schema check; one line naming the key
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    # Heavy imports only after the config is known to be valid.
    from alignment.data.types import DataError
    from alignment.evaluation.runner import SuiteFailure, TargetError, evaluate

    try:
        metrics = evaluate(cfg)
    except (DataError, FileNotFoundError, TargetError, SuiteFailure) as err:
        raise SystemExit(f"error: {err}") from None
    # The optimised value for sweepers: the first AQI (or MC2) that was computed.
    for key in ("eval/aqi/chi_sil/overall", "eval/aqi/xb_chi/overall", "eval/truthfulqa/mc2"):
        if key in metrics:
            return metrics[key]
    return None


if __name__ == "__main__":
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    cli(main)  # Hydra's own composition errors end in one line too
