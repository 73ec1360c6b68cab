"""Every float field of every schema rejects NaN and infinities with a message naming the field;
secret-bearing keys hold environment variable names.

Structural: the schemas are found through `schema_groups()` and `RunConfig`/`EvaluateConfig`'s
nested dataclasses, so a future schema (a new method, optimizer or eval suite) whose
`__post_init__` does not check a float field fails here, not as a NaN loss in a run."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from alignment.config import ModelConfig, RunConfig, schema_groups
from alignment.config.data import DatasetConfig
from alignment.config.evaluate import EvaluateConfig
from alignment.config.secrets import SECRET_KEY
from alignment.methods import DpoConfig
from alignment.optim import AdamWConfig

# The few schemas whose defaults alone are not a valid instance.
VALID = {
    ModelConfig: lambda: ModelConfig(name="t", source="tiny"),
    DatasetConfig: lambda: DatasetConfig(name="d"),
    RunConfig: lambda: RunConfig(
        output_dir="o",
        model=ModelConfig(name="t", source="tiny"),
        method=DpoConfig(name="dpo"),
        optimizer=AdamWConfig(name="adamw"),
        dataset=DatasetConfig(name="d"),
    ),
}


def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _dataclasses_in(cls: type) -> list[type]:
    """cls and every dataclass reachable through its fields' types."""
    found, todo = [], [cls]
    while todo:
        c = todo.pop()
        if c in found:
            continue
        found.append(c)
        for hint in _hints(c).values():
            todo += [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)]
    return found


def all_schemas() -> list[type]:
    roots = [RunConfig, EvaluateConfig]
    roots += [s for group in schema_groups().values() for s in group.values()]
    seen: list[type] = []
    for root in roots:
        seen += [c for c in _dataclasses_in(root) if c not in seen]
    return seen


def _is_float(hint: object) -> bool:
    return hint is float or float in typing.get_args(hint)


FLOAT_FIELDS = [
    (cls, name)
    for cls in all_schemas()
    for name, hint in _hints(cls).items()
    if _is_float(hint) and not name.isupper()
]

FLOAT_IDS = [f"{c.__name__}.{n}" for c, n in FLOAT_FIELDS]


def test_the_walk_finds_the_schemas():
    names = {c.__name__ for c in all_schemas()}
    assert {"TrainConfig", "LoraConfig", "GenerationConfig", "GritConfig", "CitaConfig"} <= names
    assert len(FLOAT_FIELDS) > 30


def _valid(cls: type):
    return VALID[cls]() if cls in VALID else cls()


@pytest.mark.parametrize("cls,name", FLOAT_FIELDS, ids=FLOAT_IDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_float_field_rejects_non_finite(cls, name, bad):
    instance = _valid(cls)  # the defaults are valid
    with pytest.raises(ValueError, match=rf"\b{name}\b") as err:
        dataclasses.replace(instance, **{name: bad})
    assert "\n" not in str(err.value)


def test_every_secret_bearing_key_holds_an_env_var_name():
    """A key whose name says secret must end in _env, accept a variable name, and reject a key
    without echoing it."""
    secret_fields = [
        (cls, f.name)
        for cls in all_schemas()
        for f in dataclasses.fields(cls)
        if SECRET_KEY.search(f.name)
    ]
    assert secret_fields, "eval.judge.api_key_env at least"
    planted = "sk-proj-PlantedValue1234567890"
    for cls, name in secret_fields:
        assert name.endswith("_env"), f"{cls.__name__}.{name} must name an env var (…_env)"
        dataclasses.replace(_valid(cls), **{name: "SOME_API_KEY"})
        with pytest.raises(ValueError, match=name) as err:
            dataclasses.replace(_valid(cls), **{name: planted})
        assert planted not in str(err.value)


@pytest.mark.parametrize(
    "cls,change,key",
    [
        ("TrainConfig", {"batch_size": 0}, "train.batch_size"),
        ("TrainConfig", {"max_steps": -2}, "train.max_steps"),
        ("TrainConfig", {"save_steps": 0}, "train.save_steps"),
        ("TrainConfig", {"nan_policy": "ignore"}, "train.nan_policy"),
        ("TrainConfig", {"max_consecutive_skips": 0}, "train.max_consecutive_skips"),
        ("LoraConfig", {"alpha": 0}, "model.lora.alpha"),
        ("DatasetConfig", {"max_examples": 0}, "dataset.max_examples"),
        ("JudgeConfig", {"timeout_s": 0.0}, "eval.judge.timeout_s"),
        ("GenerationConfig", {"top_p": 1.5}, "generation.top_p"),
    ],
)
def test_ranges_name_the_key(cls, change, key):
    schema = next(c for c in all_schemas() if c.__name__ == cls)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        dataclasses.replace(_valid(schema), **change)
