"""Config schemas (dataclasses) and their registration in Hydra's ConfigStore.

This package is the only place in `alignment/` that imports Hydra or OmegaConf. Each group option
YAML in conf/ opens with `defaults: [base_<schema>, _self_]`, so a misspelt key or a wrong type
fails when the config is composed. Entry points convert the composed DictConfig once with
`OmegaConf.to_object` into a `RunConfig`.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from alignment.config.data import DatasetConfig
from alignment.config.eval import AqiConfig, EvalConfig, JudgeConfig, TruthfulQAConfig
from alignment.config.evaluate import EvaluateConfig
from alignment.config.grit import GritConfig
from alignment.config.method import (
    BaselineConfig,
    CitaConfig,
    DpoConfig,
    FactualDpoConfig,
    MethodConfig,
    SftConfig,
)
from alignment.config.model import LoraConfig, ModelConfig
from alignment.config.optim import AdamW8bitConfig, AdamWConfig, OptimizerConfig
from alignment.config.run import RunConfig, TrackingConfig, TrainConfig

__all__ = [
    "AdamW8bitConfig",
    "AdamWConfig",
    "BaselineConfig",
    "CitaConfig",
    "DatasetConfig",
    "DpoConfig",
    "EvalConfig",
    "FactualDpoConfig",
    "GritConfig",
    "LoraConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "SftConfig",
    "TrackingConfig",
    "TrainConfig",
    "register_configs",
]

# group -> {schema name -> dataclass}; each is stored as `<group>/base_<name>`.
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"model": ModelConfig},
    "method": {
        "baseline": BaselineConfig,
        "sft": SftConfig,
        "dpo": DpoConfig,
        "cita": CitaConfig,
        "factual_dpo": FactualDpoConfig,
    },
    "optimizer": {"adamw": AdamWConfig, "adamw_8bit": AdamW8bitConfig, "grit": GritConfig},
    "dataset": {"dataset": DatasetConfig},
    "tracking": {"tracking": TrackingConfig},
    "eval": {"aqi": AqiConfig, "truthfulqa": TruthfulQAConfig, "judge": JudgeConfig},
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="base_run", node=RunConfig)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=group, name=f"base_{name}", node=node)
