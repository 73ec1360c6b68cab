"""evaluate.py's command line: adapter paths with `=` and `,` reach the config verbatim, and
Hydra's run directory is named by the target."""

from __future__ import annotations

import pytest

from alignment.config.evaluate import eval_dir, quote_path_overrides
from tests.conftest import REPO

RUN_DIR = "outputs/runs/tiny/dpo-adamw/model=tiny,train.max_steps=2/adapter"


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("evaluate", overrides=[*overrides, "output_dir=/tmp/unused"])


def test_adapter_path_reaches_the_config_verbatim() -> None:
    from hydra.errors import OverrideParseException

    with pytest.raises(OverrideParseException):  # what Hydra alone makes of it
        _compose([f"adapter={RUN_DIR}", "model=tiny"])
    quoted = quote_path_overrides([f"adapter={RUN_DIR}", "model=tiny"])
    assert quoted == [f"adapter='{RUN_DIR}'", "model=tiny"]
    cfg = _compose(quoted)
    assert cfg.adapter == RUN_DIR and cfg.model.name == "tiny"


def test_quote_path_overrides_leaves_other_arguments_alone() -> None:
    assert quote_path_overrides(["adapter='a=b'"]) == ["adapter='a=b'"]
    assert quote_path_overrides(['adapter="a=b"']) == ['adapter="a=b"']
    assert quote_path_overrides(["adapter=it's/k=v"]) == ['adapter="it\'s/k=v"']
    assert quote_path_overrides(["+adapter=k=v,w"]) == ["+adapter='k=v,w'"]
    assert quote_path_overrides(["adapter=glob(runs/*)"]) == ["adapter=glob(runs/*)"]
    assert quote_path_overrides(["adapter=(v2)/k=v"]) == ["adapter='(v2)/k=v'"]
    others = ["eval.judge.model=/m=1", "run=abc", "adapter=", "adapter=null", "--cfg", "job"]
    others.append("adapterx=a=b")
    assert quote_path_overrides(others) == others


def test_eval_dir_is_named_by_the_target() -> None:
    assert eval_dir("abc123", None, "smollm2_135m", "baseline") == "runs/abc123"
    assert eval_dir(None, None, "tiny", "baseline") == "tiny/baseline"
    name = eval_dir(None, "/x/model=tiny,train.max_steps=2/adapter", "smollm2_135m", "baseline")
    prefix, digest = name.rsplit("-", 1)
    assert prefix == "adapters/model=tiny,train.max_steps=2" and len(digest) == 10
    assert name != eval_dir(None, "/y/model=tiny,train.max_steps=2/adapter", "m", "baseline")
