"""The risk and regularizer groups: every option composes, values are checked at compose time
with the key named, the YAML options and the regularizer registry agree, and the README's
examples compose."""

from __future__ import annotations

import pytest
import yaml

from alignment.config import RiskConfig, schema_groups
from alignment.risk.regularizers import REGULARIZERS, AlignGuardConfig
from tests.conftest import REPO, compose_cfg


def test_defaults_are_off_and_reproduce_the_package(tmp_path):
    cfg = compose_cfg([], tmp_path, tmp_path)
    assert cfg.risk.name == "none" and cfg.risk.gate == "off" and cfg.regularizer is None
    assert not cfg.risk.runs
    pre = compose_cfg(["risk=preflight"], tmp_path, tmp_path).risk
    # spec/alignment_risk.md: the package's defaults.
    assert (pre.max_parameters, pre.max_samples, pre.top_rank) == (500_000, 128, 32)
    assert (pre.target_explained_variance, pre.orthogonality_threshold) == (0.9, 0.05)
    assert (pre.curvature_batches, pre.refine_batches, pre.refine_fraction) == (1, 4, 0.5)
    assert (pre.max_steps, pre.collapse_loss_threshold, pre.trust_region_warning_ratio) == (
        2000, 0.1, 5.0,
    )  # fmt: skip
    assert pre.safety.name == "safety_prefs"  # cut as the training data is (the demo's settings):
    assert (pre.safety.max_length, pre.safety.too_long) == (80, "truncate")
    assert pre.runs and pre.learning_rate is None and pre.gate == "off"
    ag = compose_cfg(["regularizer=alignguard"], tmp_path, tmp_path).regularizer
    assert isinstance(ag, AlignGuardConfig)
    assert (ag.lambda_a, ag.lambda_t, ag.lambda_nc, ag.alpha, ag.beta, ag.tau) == (
        0.25, 0.5, 0.1, 0.5, 4.0, 0.01,
    )  # fmt: skip
    assert ag.h == "fisher_diagonal" and ag.eps == 1e-12


@pytest.mark.parametrize(
    "overrides",
    [
        # README's config-group table
        [
            "risk=preflight",
            "risk.gate=skip",
            "risk.parameter_names=[*.layers.-1.self_attn.v_proj.lora_*]",
        ],
        ["regularizer=alignguard", "regularizer.lambda_a=1.0"],
        ["risk.gate=skip"],  # what ./multirun.sh ... risk.gate=skip passes on
        ["risk=preflight", "risk.safety.name=hh_rlhf", "risk.safety.data_dir=harmless-base"],
    ],
)
def test_examples_compose(tmp_path, overrides):
    cfg = compose_cfg(overrides, tmp_path, tmp_path)
    assert cfg.risk.runs or cfg.regularizer is not None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("risk.gate=maybe", "risk.gate"),
        ("risk.backend=jit", "risk.backend"),
        ("risk.max_samples=0", "risk.max_samples"),
        ("risk.target_explained_variance=1.5", "risk.target_explained_variance"),
        ("risk.learning_rate=-1", "risk.learning_rate"),
        ("risk.safety_beta=nan", "risk.safety_beta"),
        ("regularizer.alpha=2", "regularizer.alpha"),
        ("regularizer.lambda_t=-1", "regularizer.lambda_t"),
        ("regularizer.h=hessian", "regularizer.h"),
    ],
)
def test_bad_values_fail_at_compose_naming_the_key(tmp_path, override, key):
    extra = ["regularizer=alignguard"] if override.startswith("regularizer") else []
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        compose_cfg([*extra, override], tmp_path, tmp_path)


def test_unknown_keys_fail_at_compose(tmp_path):
    from hydra.errors import ConfigCompositionException

    for bad in (["risk.nope=1"], ["regularizer=alignguard", "regularizer.lambda_q=1"]):
        with pytest.raises(ConfigCompositionException):
            compose_cfg(bad, tmp_path, tmp_path)


def test_yaml_options_and_the_registry_agree():
    """conf/regularizer/<x>.yaml (none aside) <-> REGULARIZERS <-> schema_groups, both ways;
    conf/risk/*.yaml all name the one risk schema."""
    groups = schema_groups()
    options = {
        p.stem: yaml.safe_load(p.read_text()) for p in (REPO / "conf/regularizer").glob("*.yaml")
    }
    assert options.pop("none") == {"regularizer": None}
    assert set(options) == set(REGULARIZERS.names()) == set(groups["regularizer"])
    for name, node in options.items():
        assert node["defaults"] == [f"base_{name}", "_self_"] and node["name"] == name
        assert groups["regularizer"][name] is REGULARIZERS.get(name).schema
    assert groups["risk"] == {"risk": RiskConfig}
    for path in (REPO / "conf/risk").glob("*.yaml"):
        node = yaml.safe_load(path.read_text())
        assert node["defaults"] == ["base_risk", "_self_"] and node["name"] == path.stem
