"""Schema of evaluate.py (conf/evaluate.yaml) and reading a training run's stored model config.

evaluate.py takes one of three targets:
  run=<MLflow run id>            a training run: its model config and adapter come from the run,
                                 and the metrics go into that same run;
  adapter=<path> model=<name>    a saved adapter directory (logged into its training run when the
                                 directory sits next to that run's `mlflow_run_id` file, else into
                                 a new run tagged like a training run);
  method=baseline model=<name>   the base model as it is, in a new run tagged like a training
                                 run (method=baseline), so the grid compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from alignment.config.model import ModelConfig
from alignment.config.run import RunConfig


@dataclass
class EvaluateConfig(RunConfig):
    """A RunConfig plus the evaluation target (`run` or `adapter`; neither = method=baseline)."""

    run: str | None = None
    adapter: str | None = None
    # For a trained target: also score the base model (adapters disabled, or a matching baseline
    # run already in the experiment) and print both side by side.
    compare_baseline: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.run and self.adapter:
            raise ValueError("give either run=<MLflow run id> or adapter=<path>, not both")
        from alignment.methods import METHODS  # the registry knows which methods train

        if not (self.run or self.adapter) and METHODS.get(self.method.name).trains:
            raise ValueError(
                "evaluate.py needs run=<MLflow run id>, adapter=<path> model=<name>, or "
                f"method=baseline model=<name> (got method={self.method.name!r} and no target)"
            )
        if not self.eval.suites():
            raise ValueError("eval selects no suite; choose e.g. eval=[aqi,truthfulqa,judge]")


def method_config_from_yaml(text: str):
    """The `method` section of a run's stored config, checked against that method's schema (so
    evaluate.py rebuilds the model the run trained: a MAC circuit, AlignX experts, ...)."""
    from alignment.config import schema_groups  # the registries: heavy, only needed here

    stored = OmegaConf.create(text)
    if "method" not in stored or "name" not in stored.method:
        raise ValueError("the run's config has no `method` section")
    schema = schema_groups()["method"].get(str(stored.method.name))
    if schema is None:
        raise ValueError(f"the run's method {stored.method.name!r} is not a registered method")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), stored.method))


def model_config_from_yaml(text: str) -> ModelConfig:
    """The `model` section of a run's composed config (its .hydra/config.yaml), checked against
    the ModelConfig schema. Interpolations elsewhere in the file are never resolved."""
    stored = OmegaConf.create(text)
    if "model" not in stored:
        raise ValueError("the run's config has no `model` section")
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), stored.model)
    return OmegaConf.to_object(merged)
