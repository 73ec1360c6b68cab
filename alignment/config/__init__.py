"""Config schemas (dataclasses) and their registration in Hydra's ConfigStore.

This package is the only place in `alignment/` that imports Hydra or OmegaConf. Each group option
YAML in conf/ opens with `defaults: [base_<schema>, _self_]`, so a misspelt key or a wrong type
fails when the config is composed. Entry points convert the composed DictConfig once with
`OmegaConf.to_object` into a `RunConfig`.

Schemas register themselves through the entry that uses them: a method's schema is part of its
`alignment.methods` entry, an optimizer's of its `alignment.optim.OPTIMIZERS` entry, an eval
suite's is a field of `EvalConfig`. `schema_groups()` reads them from there, so there is no
second list to keep in step. A regularizer's schema is part of its
`alignment.risk.regularizers` entry; `risk` has one schema for its options (none, preflight).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from alignment.config.data import DatasetConfig
from alignment.config.eval import AqiConfig, EvalConfig, JudgeConfig, TruthfulQAConfig
from alignment.config.evaluate import EvaluateConfig
from alignment.config.grit import GritConfig, GritHParams
from alignment.config.method import MethodConfig
from alignment.config.model import LoraConfig, ModelConfig
from alignment.config.optim import AdamW8bitConfig, AdamWConfig, OptimizerConfig
from alignment.config.risk import RegularizerConfig, RiskConfig
from alignment.config.run import RunConfig, TrackingConfig, TrainConfig

__all__ = [
    "AdamW8bitConfig",
    "AdamWConfig",
    "AqiConfig",
    "DatasetConfig",
    "EvalConfig",
    "EvaluateConfig",
    "GritConfig",
    "GritHParams",
    "JudgeConfig",
    "LoraConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RegularizerConfig",
    "RiskConfig",
    "RunConfig",
    "TrackingConfig",
    "TrainConfig",
    "TruthfulQAConfig",
    "register_configs",
    "schema_groups",
]


def schema_groups() -> dict[str, dict[str, type]]:
    """group -> {schema name -> dataclass}; each is stored as `<group>/base_<name>`."""
    # Imported here: the registries pull in torch, and this package must stay light to import.
    from alignment.methods import METHODS
    from alignment.optim import OPTIMIZERS
    from alignment.risk.regularizers import REGULARIZERS

    return {
        "model": {"model": ModelConfig},
        "dataset": {"dataset": DatasetConfig},
        "tracking": {"tracking": TrackingConfig},
        "method": {name: METHODS.get(name).schema for name in METHODS},
        "optimizer": {name: OPTIMIZERS.get(name).schema for name in OPTIMIZERS},
        "eval": EvalConfig.schemas(),
        "risk": {"risk": RiskConfig},
        "regularizer": {name: REGULARIZERS.get(name).schema for name in REGULARIZERS},
    }


DEFAULT_STORE = ("sqlite:///mlflow.db", "alignment")


def run_leaf(overrides: str, uri: str, experiment: str) -> str:
    """The last component of a run's directory: its overrides, plus `@store-<hash>` when it logs
    somewhere else than the default MLflow store and experiment. The tracking store is part of a
    run's identity (rerunning a command against a new database is a new run), but its URI is no
    file name (and may hold credentials), so it enters as a short hash."""
    if (uri, experiment) == DEFAULT_STORE:
        return overrides
    digest = hashlib.sha256(f"{uri}\n{experiment}".encode()).hexdigest()[:8]
    return f"{overrides}@store-{digest}" if overrides else f"@store-{digest}"


CONF = Path(__file__).resolve().parents[2] / "conf"
# Groups a user never selects: per-(model, dataset) and per-(model, dataset, method)
# specialisations picked automatically, the presets and model lists that experiments include, and
# the git-ignored machine settings.
HIDDEN_GROUPS = {
    "hydra",
    "model_dataset",
    "model_dataset_method",
    "preset",
    "grid",
    "local",
    "local.example",
}


def help_groups() -> str:
    """`--help`'s list of config groups and their options: the YAML files in conf/ only (the
    `base_*` schemas in the ConfigStore are not options), hidden groups left out."""
    lines = []
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name not in HIDDEN_GROUPS):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"{group.name}: {', '.join(options)}")
    return "\n".join(lines)


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore and the config resolvers (idempotent)."""
    OmegaConf.register_new_resolver("run_leaf", run_leaf, replace=True)
    OmegaConf.register_new_resolver("help_groups", help_groups, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_run", node=RunConfig)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    for group, schemas in schema_groups().items():
        for name, node in schemas.items():
            cs.store(group=group, name=f"base_{name}", node=node)
