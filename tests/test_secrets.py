"""Secrets never reach a file a run writes: planted in the environment (HF_TOKEN,
OPENAI_API_KEY, interpolated into a tag and the run name) and pasted into a config value, then
every byte a run wrote (the MLflow db, its artifacts, the output directory with .hydra/,
train.log, checkpoints and training_args.bin, the cache) and printed is searched for them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alignment.config.secrets import SECRET_KEY, check_env_name, credential_problem, scrub
from alignment.evaluation.judges import OpenAIJudge
from alignment.tracking import flatten, redaction
from tests.conftest import run_train

HF = "hf_PlantedHfTokenValue0123456789"
OPENAI = "sk-proj-PlantedOpenAIValue0123456789"
ENV = {"HF_TOKEN": HF, "OPENAI_API_KEY": OPENAI}


def test_env_names_pass_keys_fail_without_echo():
    check_env_name("k", "OPENAI_API_KEY")
    check_env_name("k", None)
    for value in (OPENAI, HF, "Bearer abc", "openai_key"):
        with pytest.raises(ValueError, match="^k must be") as err:
            check_env_name("k", value)
        assert value not in str(err.value)


def test_credential_problem(monkeypatch):
    monkeypatch.setenv("MY_SECRET", "s3cr3t-value")
    assert credential_problem("eval.judge.api_key_env", "OPENAI_API_KEY") is None
    assert "NAME" in credential_problem("eval.judge.api_key_env", OPENAI)
    assert "NAME" in credential_problem("eval.judge.api_key_env", f"MY_KEY,{OPENAI}")  # a sweep
    assert credential_problem("tag", "ablation-3") is None
    assert credential_problem("max_new_tokens", "12") is None  # `tokens` is not `token`
    assert "looks like an API key" in credential_problem("tag", HF)
    assert "$MY_SECRET" in credential_problem("tracking.run_name", "x-s3cr3t-value")
    assert credential_problem("+tracking.tags.n", "${oc.env:HF_TOKEN}") is None  # resolved later


def test_scrub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF)
    tree = {"a": {"api_key_env": "OPENAI_API_KEY", "token": "x", "note": f"t={HF}"}, "l": [OPENAI]}
    assert scrub(tree) == {
        "a": {"api_key_env": "OPENAI_API_KEY", "token": "***", "note": "t=***"},
        "l": ["***"],
    }


def test_flatten_masks_secret_named_keys_and_redacts_values(monkeypatch):
    """The MLflow params of a run: a value under a secret-named key (a tag called db_password,
    which no key shape reveals) is masked whole; a secret-env value inside another key's value
    and a URI's user:password are redacted; ordinary keys (max_new_tokens is not a token) stay."""
    monkeypatch.setenv("HF_TOKEN", HF)
    tree = {
        "tracking": {"tags": {"db_password": "hunter2hunter2"}, "uri": "http://u:pw@host:5000"},
        "eval": {"judge": {"max_new_tokens": 4}},
        "tag": f"run-{HF}",
    }
    assert redaction.SECRET_KEY.pattern == SECRET_KEY.pattern  # one rule for config and params
    assert flatten(tree) == {
        "tracking.tags.db_password": "***",
        "tracking.uri": "http://***@host:5000",
        "eval.judge.max_new_tokens": "4",
        "tag": "run-***",
    }


def test_judge_warns_when_the_named_variable_is_missing(monkeypatch, caplog):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    monkeypatch.setenv("SET_KEY_VAR", OPENAI)
    with caplog.at_level(logging.WARNING):
        OpenAIJudge(base_url="http://127.0.0.1:9", model_id="m", api_key_env="SET_KEY_VAR")
        assert not caplog.records
        OpenAIJudge(base_url="http://127.0.0.1:9", model_id="m", api_key_env="NO_SUCH_KEY_VAR")
    (record,) = caplog.records
    assert "$NO_SUCH_KEY_VAR, which is not set" in record.getMessage()


def _hits(roots: list[Path], secrets: list[str]) -> list[str]:
    found = []
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            found += [f"{path}: {s[:8]}..." for s in secrets if s.encode() in data]
    return found


def test_no_file_a_run_writes_holds_a_secret(tmp_path, cache_dir):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    args = [
        "model=tiny",
        "train.max_steps=3",
        "train.save_steps=2",
        "train.samples=1",
        f"tracking.uri={db}",
        "+tracking.tags.note=${oc.env:HF_TOKEN}",
        "tracking.run_name=${oc.env:OPENAI_API_KEY}",
        "eval_after_train=true",
        "eval=aqi",
        "eval.aqi.reducer=pca",
        "eval.aqi.samples_per_category=3",
    ]
    proc = run_train(args, tmp_path / "run", cache_dir, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    written = [run / ".hydra" / "overrides.yaml", run / "train.log", run / "summary.json"]
    written += [run / "resolved_config.yaml", run / "eval" / "eval_metrics.json"]
    written += [run / "checkpoints" / "checkpoint-2" / "training_args.bin"]
    assert all(p.is_file() for p in written), [p for p in written if not p.is_file()]
    assert (tmp_path / "mlartifacts").is_dir()

    # A key pasted into a config value: refused before anything is written.
    pasted = run_train(
        ["model=tiny", "eval=judge", f"eval.judge.api_key_env={OPENAI}", f"tracking.uri={db}"],
        tmp_path / "pasted",
        cache_dir,
        env=ENV,
    )
    assert pasted.returncode != 0 and not (tmp_path / "pasted").exists()
    assert "eval.judge.api_key_env must be the NAME" in pasted.stderr.strip().splitlines()[-1]

    printed = tmp_path / "printed.txt"
    printed.write_text(proc.stdout + proc.stderr + pasted.stdout + pasted.stderr)
    assert _hits([tmp_path, cache_dir], [HF, OPENAI]) == []
