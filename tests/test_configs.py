"""Every option of every config group composes against its schema; typos and wrong types fail
at compose time with Hydra's message; --help lists the groups."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from tests.conftest import REPO, compose_cfg

GROUPS = ["model", "method", "optimizer", "dataset", "tracking"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((REPO / "conf" / g).glob("*.yaml"))]


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes(group, option, tmp_path):
    extra = ["dataset.path=/tmp/x.jsonl"] if (group, option) == ("dataset", "local") else []
    cfg = compose_cfg([f"{group}={option}", *extra], tmp_path, tmp_path)
    node = getattr(cfg, group)
    assert type(node).__name__.endswith("Config")
    if group in ("method", "model"):
        assert node.name == option


def test_stable_key_names(tmp_path):
    cfg = compose_cfg(["method=dpo", "model=tiny"], tmp_path, tmp_path)
    assert cfg.seed == 0 and cfg.method.beta == 0.1 and cfg.model.quantization == "none"
    assert cfg.tracking.uri.startswith("sqlite:///") and cfg.tracking.experiment
    assert cfg.dataset.max_length == 448  # the tiny x safety_prefs specialisation
    assert compose_cfg([], tmp_path, tmp_path).dataset.max_length == 80  # the demo (smollm2)


@pytest.mark.parametrize(
    "override,error",
    [
        ("method.betta=0.1", ConfigCompositionException),  # typo in a key
        ("method.beta=abc", ConfigCompositionException),  # wrong type
        ("model=nope", ConfigCompositionException),  # unknown option
        ("method=nope", ConfigCompositionException),
    ],
)
def test_bad_overrides_fail_at_compose(override, error, tmp_path):
    with pytest.raises(error):
        compose_cfg([override], tmp_path, tmp_path)


def test_unknown_model_lists_choices(tmp_path):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["model=llama4"], tmp_path, tmp_path)
    assert "llama3_8b" in str(err.value) and "smollm2_135m" in str(err.value)


def test_schema_validation_names_field(tmp_path):
    with pytest.raises(ValueError, match="method.kl_estimator"):
        compose_cfg(["method=cita", "method.kl_estimator=full"], tmp_path, tmp_path)
    with pytest.raises(ValueError, match="model.quantization"):
        compose_cfg(["model.quantization=3bit"], tmp_path, tmp_path)


# Hydra callbacks can only be named by a Python path: the only exceptions.
CALLBACKS = {
    "train.yaml": ["alignment.config.sweep.SweepParentRun", "alignment.config.cli.CheckBeforeRun"],
    "evaluate.yaml": ["alignment.config.cli.CheckBeforeRun"],
}


def test_yaml_never_names_python_paths():
    for path in (REPO / "conf").rglob("*.yaml"):
        text = path.read_text()
        for target in CALLBACKS.get(path.name, []) if path.parent.name == "conf" else []:
            text = text.replace(f"_target_: {target}", "")
        assert "_target_" not in text, path


def test_help_lists_groups_and_cfg_job_prints():
    out = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    groups = out.split("== Config groups (group=option) ==")[1].split("== Config ==")[0]
    for group in GROUPS + ["eval", "experiment"]:
        assert f"\n{group}: " in groups, group
    assert "smollm2_135m" in groups and "factual_dpo" in groups
    # Schemas, helper groups and machine settings are not options a user picks.
    for hidden in ("base_", "local.example", "preset:", "grid:", "model_dataset"):
        assert hidden not in groups, hidden
    job = subprocess.run(
        [sys.executable, "train.py", "--cfg", "job", "method=cita"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "kl_estimator: seq_logratio" in job


def test_unused_keys_check(tmp_path):
    """Airtight configs: every schema field is read somewhere in the package. Method schemas
    need no text search: registration fails unless each key is a keyword of the method's loss
    or one of its declared data_keys (test_registries.py checks that guard)."""
    import dataclasses

    from alignment import config as c

    source = "\n".join(
        p.read_text() for p in Path(c.__file__).parents[1].rglob("*.py") if "config" not in p.parts
    )
    schemas = [
        c.ModelConfig,
        c.LoraConfig,
        c.DatasetConfig,
        c.TrainConfig,
        c.TrackingConfig,
        c.OptimizerConfig,
        c.GritConfig,
        c.RiskConfig,
    ]
    unread = [
        f"{s.__name__}.{f.name}"
        for s in schemas
        for f in dataclasses.fields(s)
        if f".{f.name}" not in source
    ]
    assert not unread, unread
