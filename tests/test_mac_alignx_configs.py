"""method=mac and method=alignx compose with the research models, the hub data preset and a
sweep over both; bad values fail at compose time naming the key."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO, compose_cfg


@pytest.mark.parametrize("model", ["llama3_8b", "mistral_7b"])
@pytest.mark.parametrize("method", ["mac", "alignx"])
def test_composes_with_the_research_models(method, model, tmp_path):
    cfg = compose_cfg([f"method={method}", f"model={model}"], tmp_path, tmp_path)
    assert cfg.method.name == method and cfg.model.quantization == "4bit"
    assert cfg.method.data.loader("honesty") == "honest_builtin"  # offline by default
    if method == "mac":
        assert cfg.method.layers == [15] and cfg.method.site == "attn_out"
        assert cfg.method.head_dim == 64 and not cfg.method.lora
    else:
        m = cfg.method
        assert (m.k, m.router_features, m.temperature) == (256, 1024, 1.0)
        assert (m.lambda1, m.lambda2, m.eps, m.mix, m.stage) == (0.6, 0.4, 0.05, "logits", "all")


def test_hub_preset_and_per_axis_overrides(tmp_path):
    cfg = compose_cfg(
        ["method=mac", "method.data.preset=hub", "method.data.honesty.path=my.jsonl"],
        tmp_path,
        tmp_path,
    )
    data = cfg.method.data
    assert [data.loader(a) for a in ("helpfulness", "harmlessness", "honesty")] == [
        "alpaca",
        "beavertails_safe",
        "truthfulqa_answers",
    ]
    from alignment.data.axis_data import axis_sources

    sources = axis_sources(cfg.dataset, data)
    assert sources["harmlessness"].split == "30k_train" and sources["honesty"].path == "my.jsonl"
    assert sources["honesty"].split == "validation" and sources["helpfulness"].split == "train"


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["method=mac", "method.site=mlp_out"], "method.site"),
        (["method=mac", "method.mode=ablated"], "method.mode"),
        (["method=mac", "method.head_dim=0"], "method.head_dim"),
        (["method=mac", "method.layers=[-1]"], "method.layers"),
        (["method=mac", "method.data.preset=web"], "method.data.preset"),
        (["method=alignx", "method.stage=2"], "method.stage1_run"),
        (["method=alignx", "method.mix=weights"], "method.mix"),
        (["method=alignx", "method.eps=0"], "method.eps"),
        (["method=alignx", "method.lambda1=0", "method.lambda2=0"], "method.lambda1"),
        (["method=alignx", "method.prefix=system"], "method.prefix"),
        (["method=alignx", "method.combine=sum"], "method.combine"),
    ],
)
def test_bad_values_name_the_key(overrides, key, tmp_path):
    with pytest.raises(Exception, match=key.replace(".", r"\.")):
        compose_cfg(overrides, tmp_path, tmp_path)


def test_a_sweep_over_both_methods_composes(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from plan_sweep import plan

    jobs = plan(["method=mac,alignx", "model=llama3_8b,mistral_7b", "seed=0,1"])
    assert len(jobs) == 8
    assert {o for job in jobs for o in job if o.startswith("method=")} == {
        "method=mac",
        "method=alignx",
    }
