"""Config schemas (dataclasses) and their registration in Hydra's ConfigStore.

This package is the only place in `alignment/` that imports Hydra or OmegaConf. Each group option
YAML in conf/ opens with `defaults: [base_<schema>, _self_]`, so a misspelt key or a wrong type
fails when the config is composed. Entry points convert the composed DictConfig once with
`OmegaConf.to_object` into a `RunConfig`.

Schemas register themselves through the entry that uses them: a method's schema is part of its
`alignment.methods` entry, an optimizer's of its `alignment.optim.OPTIMIZERS` entry, an eval
suite's is a field of `EvalConfig`. `schema_groups()` reads them from there, so there is no
second list to keep in step.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from alignment.config.data import DatasetConfig
from alignment.config.eval import AqiConfig, EvalConfig, JudgeConfig, TruthfulQAConfig
from alignment.config.evaluate import EvaluateConfig
from alignment.config.grit import GritConfig, GritHParams
from alignment.config.method import MethodConfig
from alignment.config.model import LoraConfig, ModelConfig
from alignment.config.optim import AdamW8bitConfig, AdamWConfig, OptimizerConfig
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

    return {
        "model": {"model": ModelConfig},
        "dataset": {"dataset": DatasetConfig},
        "tracking": {"tracking": TrackingConfig},
        "method": {name: METHODS.get(name).schema for name in METHODS},
        "optimizer": {name: OPTIMIZERS.get(name).schema for name in OPTIMIZERS},
        "eval": EvalConfig.schemas(),
    }


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="base_run", node=RunConfig)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    for group, schemas in schema_groups().items():
        for name, node in schemas.items():
            cs.store(group=group, name=f"base_{name}", node=node)
