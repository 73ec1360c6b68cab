"""Evaluate one model and log to MLflow (AQI, TruthfulQA MC1/MC2, judge metrics).

  python evaluate.py run=<mlflow run id> eval=[aqi,truthfulqa]      (into the training run)
  python evaluate.py adapter=<dir> model=<name> eval=[aqi]
  python evaluate.py method=baseline model=<name> eval=[aqi,truthfulqa,judge]   (its own run)

`python evaluate.py --help` lists the config groups; `--cfg job` prints the composed config.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from alignment.config import register_configs
from alignment.config.evaluate import EvaluateConfig

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(dcfg: DictConfig) -> float | None:
    cfg: EvaluateConfig = OmegaConf.to_object(dcfg)
    # Heavy imports only after the config is known to be valid.
    from alignment.data.types import DataError
    from alignment.evaluation.runner import evaluate

    try:
        metrics = evaluate(cfg)
    except (DataError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    # The optimised value for sweepers: the first AQI (or MC2) that was computed.
    for key in ("eval/aqi/chi_sil/overall", "eval/aqi/xb_chi/overall", "eval/truthfulqa/mc2"):
        if key in metrics:
            return metrics[key]
    return None


if __name__ == "__main__":
    main()
