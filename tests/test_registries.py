"""One registration per extension point: the YAML options, the schemas and the registries agree
in both directions, and the registration guards catch a method whose config and loss disagree."""

from __future__ import annotations

import dataclasses
import doctest
import re

import pytest
import yaml

from alignment.config import GritConfig, OptimizerConfig, schema_groups
from alignment.config.eval import EvalConfig
from alignment.config.method import MethodConfig
from alignment.evaluation.suites import SUITES
from alignment.losses import dpo_loss
from alignment.methods import METHODS, Method
from alignment.optim import OPTIMIZERS, trainer_max_grad_norm
from tests.conftest import REPO

# Groups whose options each have their own schema (conf/<group>/<x>.yaml -> base_<x>).
PER_OPTION = {"method": METHODS, "optimizer": OPTIMIZERS, "eval": SUITES}


def yaml_options(group: str) -> dict[str, dict]:
    files = sorted((REPO / "conf" / group).glob("*.yaml"))
    return {p.stem: yaml.safe_load(p.read_text()) or {} for p in files if p.stem != "none"}


@pytest.mark.parametrize("group", sorted(PER_OPTION))
def test_every_option_has_an_entry_and_a_schema_and_the_reverse(group):
    options, registry, schemas = yaml_options(group), PER_OPTION[group], schema_groups()[group]
    assert set(options) == set(registry.names()) == set(schemas), group
    for name, node in options.items():
        # a method may choose its default data (factual_dpo: the shipped pairs with flags)
        data = [d for d in node["defaults"] if isinstance(d, dict) and group == "method"]
        assert all(list(d) == ["override /dataset@_global_.dataset"] for d in data), name
        defaults = [d for d in node["defaults"] if d not in data]
        assert defaults == [f"base_{name}", "_self_"], f"conf/{group}/{name}.yaml"
        if group != "eval":
            assert node["name"] == name, f"conf/{group}/{name}.yaml"


@pytest.mark.parametrize("group", ["model", "dataset", "tracking"])
def test_shared_schema_groups_name_their_one_schema(group):
    (schema,) = schema_groups()[group]
    for name, node in yaml_options(group).items():
        assert node["defaults"] == [f"base_{schema}", "_self_"], f"conf/{group}/{name}.yaml"


def test_schemas_are_the_registry_entries_own():
    groups = schema_groups()
    for name in METHODS:
        assert groups["method"][name] is METHODS.get(name).schema
        assert issubclass(METHODS.get(name).schema, MethodConfig)
    for name in OPTIMIZERS:
        assert issubclass(groups["optimizer"][name], OptimizerConfig)
    for name, schema in EvalConfig.schemas().items():
        assert re.fullmatch(r"\d+\.\d+", schema.VERSION), name


def test_who_clips_is_decided_by_the_optimizer_entry():
    assert OPTIMIZERS.get("grit").clips_gradients and not OPTIMIZERS.get("adamw").clips_gradients
    assert trainer_max_grad_norm(GritConfig(max_grad_norm=0.7)) == 0.0
    adamw = OPTIMIZERS.get("adamw").schema(name="adamw", max_grad_norm=0.7)
    assert trainer_max_grad_norm(adamw) == 0.7


@dataclasses.dataclass
class _Beta(MethodConfig):
    beta: float = 0.1
    label_smoothing: float = 0.0
    reference_free: bool = False
    sft_weight: float = 0.0


def test_registration_rejects_a_config_key_the_loss_ignores():
    @dataclasses.dataclass
    class Extra(_Beta):
        gamma: float = 1.0

    with pytest.raises(TypeError, match=r"config keys \['gamma'\]"):
        Method("x", Extra, dpo_loss)


def test_registration_rejects_a_loss_argument_no_key_sets():
    @dataclasses.dataclass
    class Short(MethodConfig):
        beta: float = 0.1

    with pytest.raises(
        TypeError, match=r"loss arguments \['label_smoothing', 'reference_free', 'sft_weight'\]"
    ):
        Method("x", Short, dpo_loss)


def test_registration_rejects_tensor_arguments_the_batch_lacks():
    def odd_loss(policy_chosen_logps, mystery, *, beta):
        raise AssertionError

    @dataclasses.dataclass
    class B(MethodConfig):
        beta: float = 0.1

    with pytest.raises(TypeError, match=r"\['mystery'\] are not PolicyBatch fields"):
        Method("x", B, odd_loss)
    assert Method("x", _Beta, dpo_loss).trains  # the matching schema registers


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).trains])
def test_each_loss_carries_a_passing_hand_derived_example(name):
    """A loss's docstring example is its hand-derived test (the loss and its test live together)."""
    fn = METHODS.get(name).loss_fn
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(fn, globs=vars(__import__(fn.__module__, fromlist=["_"])))
    assert test.examples, f"{fn.__name__} has no >>> example"
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
    assert result.failed == 0 and result.attempted > 0


def test_no_method_or_optimizer_names_are_branched_on_outside_the_registries():
    pattern = re.compile(r"""\b(method|optimizer|opt)\.name\s*(==|!=|in)\s*[("']""")
    offenders = [
        f"{path.relative_to(REPO)}:{i}"
        for path in (REPO / "alignment").rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
