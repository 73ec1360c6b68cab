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

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

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
        if self.rerun:
            raise ValueError("rerun=<id> is a train.py option; evaluate.py takes run=<id>")
        from alignment.methods import METHODS  # the registry knows which methods train

        if not (self.run or self.adapter) and METHODS.get(self.method.name).trains:
            raise ValueError(
                "evaluate.py needs run=<MLflow run id>, adapter=<path> model=<name>, or "
                f"method=baseline model=<name> (got method={self.method.name!r} and no target)"
            )
        if not self.eval.suites():
            raise ValueError("eval selects no suite; choose e.g. eval=[aqi,truthfulqa,judge]")


def model_config_from_yaml(text: str) -> ModelConfig:
    """The `model` section of a run's composed config (its .hydra/config.yaml), checked against
    the ModelConfig schema. Interpolations elsewhere in the file are never resolved."""
    stored = OmegaConf.create(text)
    if "model" not in stored:
        raise ValueError("the run's config has no `model` section")
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), stored.model)
    # A run that started from an init adapter saved a complete adapter (it trained that adapter
    # further): evaluating it needs the base and that adapter only, and the init adapter's
    # directory need not exist any more (or on this machine).
    merged.init_adapter = None
    return OmegaConf.to_object(merged)


# Overrides whose value is one file-system path, taken verbatim. The project's own run directories
# look like `outputs/runs/tiny/dpo-adamw/model=tiny,train.max_steps=2/adapter`, and Hydra's
# override grammar reads `=` in a value as an error and `,` as a sweep.
PATH_OVERRIDES = ("adapter",)


def quote_path_overrides(args: list[str]) -> list[str]:
    """Command-line overrides with each PATH_OVERRIDES value quoted for Hydra, so
    `adapter=<any path>` works as typed. Values already quoted, sweeps over several adapters
    written as `adapter=glob(...)`/`choice(...)`, and paths holding both quote kinds are left as
    they are."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        bare = key.lstrip("+~")
        if not sep or bare not in PATH_OVERRIDES or not value or _left_alone(value):
            out.append(arg)
        elif "'" not in value:
            out.append(f"{key}='{value}'")
        elif '"' not in value:
            out.append(f'{key}="{value}"')
        else:
            out.append(arg)
    return out


def _left_alone(value: str) -> bool:
    """Already quoted, null, or a sweep function such as glob(...) or choice(...)."""
    return value[0] in "'\"" or value == "null" or re.match(r"[a-z_]+\(", value) is not None


def eval_dir(run: str | None, adapter: str | None, model: str, method: str) -> str:
    """evaluate.py's Hydra run directory under outputs/eval/ (conf/evaluate.yaml): named by the
    target. A run's model and method are known only once MLflow is asked, so run=<id> gets
    `runs/<id>` (its eval files go to the training run's own directory when that is on this
    machine: see alignment.evaluation.runner); an adapter gets `adapters/<its parent's name>-<hash
    of its path>`; the base model `<model>/<method>`."""
    if run:
        return f"runs/{run}"
    if adapter:
        path = Path(adapter).expanduser().resolve()
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        return f"adapters/{path.parent.name}-{digest}"
    return f"{model}/{method}"


OmegaConf.register_new_resolver("eval_dir", eval_dir, replace=True)
