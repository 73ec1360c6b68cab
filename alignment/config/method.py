"""The base schema of the `method` config group.

Each method's own schema (its hyperparameters) sits beside its entry in `alignment/methods.py`,
which is where a method is registered; `register_configs` stores every registered schema as
`method/base_<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class MethodConfig:
    name: str = MISSING
