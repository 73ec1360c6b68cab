"""The suites in-process on the tiny fixture model: answer cache, response-AQI, judge suite with
a scripted backend, and run_eval's output keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.config.eval import GenerationConfig
from alignment.evaluation import suites
from alignment.evaluation.generation import cache_file, generate_answers
from alignment.evaluation.runner import run_eval
from tests.conftest import SHARED_DATA, compose_cfg


def test_answers_are_cached_per_weights_and_settings(tiny_lm, tmp_path) -> None:
    model, tok = tiny_lm
    gen = GenerationConfig(max_new_tokens=3, temperature=0.0, batch_size=2)
    prompts = ["How do I bake bread at home?", "Hi", "Tell me how to hurt someone."]
    first = generate_answers(model, tok, prompts, gen, weights_key="w1", cache_dir=tmp_path)
    path = cache_file(tmp_path, "w1", prompts, gen)
    assert json.loads(path.read_text())["answers"] == first and len(first) == 3
    path.write_text(json.dumps({"answers": ["x", "y", "z"]}))  # proves the cache is read
    assert generate_answers(model, tok, prompts, gen, weights_key="w1", cache_dir=tmp_path) == [
        "x",
        "y",
        "z",
    ]
    assert cache_file(tmp_path, "w2", prompts, gen) != path
    other = GenerationConfig(max_new_tokens=4, temperature=0.0, batch_size=2)
    assert cache_file(tmp_path, "w1", prompts, other) != path
    sampled = GenerationConfig(max_new_tokens=3, temperature=0.7, batch_size=2, seed=3)
    a = generate_answers(model, tok, prompts, sampled, weights_key="s", cache_dir=tmp_path / "a")
    b = generate_answers(model, tok, prompts, sampled, weights_key="s", cache_dir=tmp_path / "b")
    assert a == b  # seeded sampling


class FixedVerdicts:
    kind, model_id = "scripted", "fixed"

    def generate(self, prompts):
        out = []
        for p in prompts:
            if "[[A]]" in (p.system or ""):
                out.append("[[A]]")  # position-biased judge: always A -> every pair ties
            elif "[[SAFE]]" in (p.system or ""):
                out.append("[[UNSAFE]]")
            else:
                out.append("[[YES]]")
        return out

    def prob_yes(self, prompts):
        return None


@pytest.fixture
def eval_cfg(tmp_path):
    def make(overrides: list[str]):
        return compose_cfg(["model=tiny", *overrides], tmp_path / "out", tmp_path / "cache")

    return make


def test_run_eval_response_aqi_and_judge(tiny_lm, eval_cfg, monkeypatch) -> None:
    model, tok = tiny_lm
    overrides = [
        "eval=[aqi,judge]",
        "eval.aqi.protocol=response",
        "eval.aqi.reducer=none",
        "eval.aqi.samples_per_category=3",
        "eval.aqi.generation.max_new_tokens=3",
        "eval.judge.max_samples=3",
        "eval.judge.generation.max_new_tokens=3",
        "eval.judge.bootstrap_samples=10",
    ]
    tqa = SHARED_DATA / "truthfulqa-en.json"
    if tqa.is_file():
        overrides.append(f"eval.judge.truthfulqa_data={tqa}")
    else:
        overrides.append("eval.judge.tasks=[helpfulness,safety]")
    cfg = eval_cfg(overrides)
    monkeypatch.setattr(suites, "build_judge", lambda cfg, model_id: FixedVerdicts())
    metrics = run_eval(cfg, model, tok, None, weights_key="tiny-fixture")
    assert 0.0 <= metrics["eval/aqi/chi_sil/overall"] <= 1.0
    assert metrics["eval/aqi/n"] == 42  # 7 axioms x 2 labels x 3
    assert metrics["eval/judge/helpfulness/win_rate_alpaca_eval"] == 0.5  # all ties
    assert metrics["eval/judge/safety/safety_score"] == 1.0
    if tqa.is_file():
        assert metrics["eval/judge/truthfulness/ti_and"] == 1.0
        assert metrics["eval/judge/average_alignx"] == pytest.approx((0.5 + 1.0 - 1.0) / 3)
    out = Path(cfg.output_dir) / "eval"
    saved = json.loads((out / "eval_metrics.json").read_text())
    assert saved["params"]["eval/aqi/protocol"] == "response"
    assert saved["params"]["eval/judge/version"] == "1.0"
    records = (out / "judge_records.jsonl").read_text().splitlines()
    assert json.loads(records[0])["raw"] == ["[[A]]", "[[A]]"]
