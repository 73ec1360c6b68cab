"""Methods: the registry (`METHODS`, `Method`, `PolicyBatch`) and the registered methods.

A new method is one loss in alignment/losses/ (its docstring example is its hand-derived
test), one schema + `register(Method(...))` entry in a module here, one conf/method/ YAML and one
PAPERS.md line. Nothing else in the package branches on a method's name.
"""

from alignment.methods import dpo_family, grid
from alignment.methods.grid import (
    BaselineConfig,
    CitaConfig,
    DpoConfig,
    FactualDpoConfig,
    SftConfig,
)
from alignment.methods.registry import METHODS, Method, PolicyBatch, get_method, register

__all__ = [
    "METHODS",
    "BaselineConfig",
    "CitaConfig",
    "DpoConfig",
    "FactualDpoConfig",
    "Method",
    "PolicyBatch",
    "SftConfig",
    "dpo_family",
    "get_method",
    "grid",
    "register",
]
