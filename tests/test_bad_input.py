"""Bad input stops the run before training with one line naming the file, row and field.

The catalogue (`CATALOGUE`, `DATA_CASES`) runs train.py's command line in this process, as the
shell does (train.py run as __main__): every kind of bad input ends in one `error: ...` line
naming the key (or file and row), a non-zero exit and no traceback; a config error leaves no
run directory behind, a secret is never repeated. The runtime case (a NaN at step 4) is in
tests/test_nan_guard.py, secrets end to end in tests/test_secrets.py.
"""

import json
import runpy
import sys

import pytest

from alignment.data.types import DataError
from alignment.methods import get_method
from alignment.models import load_tokenizer
from tests.conftest import REPO, compose_cfg, run_train


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"prompt": "How do I pick a lock?", "chosen": "I can't help with that.", "rejected": "Sure!"}


def _prepare(tmp_path, cache_dir, path, *extra):
    from alignment.data.prepare import prepare_data

    cfg = compose_cfg(
        ["model=tiny", "dataset=local", f"dataset.path={path}", *extra], tmp_path / "o", cache_dir
    )
    return prepare_data(cfg, get_method(cfg.method), load_tokenizer(cfg.model, cfg.cache_dir))


CASES = {
    "malformed": ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a",,}\n', ":2:"),
    "missing_column": (json.dumps({"prompt": "a", "chosen": "b"}) + "\n", "rejected"),
    "empty_response": (json.dumps({**GOOD, "chosen": "  "}) + "\n", "chosen"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_row_errors_name_file_row_field(case, tmp_path, cache_dir):
    text, expected = CASES[case]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + text if case != "malformed" else text)
    with pytest.raises(DataError) as err:
        _prepare(tmp_path, cache_dir, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and expected in message


def test_non_utf8_file(tmp_path, cache_dir):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"prompt": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.jsonl:2.*UTF-8"):
        _prepare(tmp_path, cache_dir, path)


def test_bad_factual_flag_names_row(tmp_path, cache_dir):
    path = _write(
        tmp_path / "f.jsonl", [{**GOOD, "h_w": 0, "h_l": 1}, {**GOOD, "h_w": 2, "h_l": 0}]
    )
    with pytest.raises(DataError, match=r"f\.jsonl:2.*h_w"):
        _prepare(tmp_path, cache_dir, path, "method=factual_dpo", "method.delta=10")


def test_missing_flags_with_delta_is_an_error(tmp_path, cache_dir):
    path = _write(tmp_path / "nf.jsonl", [GOOD, GOOD])
    with pytest.raises(DataError, match="h_w"):
        _prepare(tmp_path, cache_dir, path, "method=factual_dpo", "method.delta=10")


def test_long_rows_are_filtered_and_counted(tmp_path, cache_dir):
    long = {**GOOD, "chosen": "word " * 400}
    path = _write(tmp_path / "long.jsonl", [GOOD] * 9 + [long])
    data = _prepare(tmp_path, cache_dir, path, "dataset.val_fraction=0")
    assert data.counts["data/train_filtered_too_long"] == 1
    assert len(data.train) == 9


def test_sft_only_rows_rejected_for_dpo(tmp_path, cache_dir):
    path = _write(tmp_path / "sft.jsonl", [GOOD, {**GOOD, "rejected": ""}])
    with pytest.raises(DataError, match="rejected"):
        _prepare(tmp_path, cache_dir, path)


def test_missing_gguf_is_named(tmp_path, cache_dir):
    cfg = compose_cfg(["model.gguf_file=nope.gguf"], tmp_path, cache_dir)
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        load_tokenizer(cfg.model, cfg.cache_dir)


def test_cli_prints_one_line_and_trains_nothing(tmp_path, cache_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{broken\n")
    proc = run_train(
        [
            "model=tiny",
            "dataset=local",
            f"dataset.path={path}",
            f"tracking.uri=sqlite:///{tmp_path}/m.db",
        ],
        tmp_path / "run",
        cache_dir,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{path}:2" in last
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "mlflow_run_id").exists()


def test_unknown_method_cli_lists_choices(tmp_path, cache_dir):
    proc = run_train(["method=dpoo"], tmp_path / "run", cache_dir)
    assert proc.returncode != 0 and "cita" in proc.stderr and "factual_dpo" in proc.stderr


# ---------------------------------------------------------------- the catalogue

KEY = "sk-proj-PlantedKey0123456789abcdef"  # shaped like an OpenAI key
HF_VALUE = "plantedhfvalue4242"  # no known key shape: caught as the value of $HF_TOKEN
ENV = {"OPENAI_API_KEY": KEY, "HF_TOKEN": HF_VALUE}

# kind -> (overrides, what the one line must say). None of them creates the run directory.
CATALOGUE = {
    "nan_beta": (["method.beta=nan"], "method.beta must be a finite number, got nan"),
    "inf_beta": (["method.beta=inf"], "method.beta must be a finite number, got inf"),
    "nan_delta": (["method=factual_dpo", "method.delta=nan"], "method.delta must be a finite"),
    "negative_lr": (["optimizer.lr=-1e-4"], "optimizer.lr must be > 0"),
    "inf_lr": (["optimizer.lr=inf"], "optimizer.lr must be a finite number, got inf"),
    "grit_nan_damping": (["optimizer=grit", "optimizer.kfac_damping=nan"], "kfac_damping"),
    "nan_epochs": (["train.epochs=nan"], "train.epochs must be a finite number"),
    "zero_batch": (["train.batch_size=0"], "train.batch_size must be >= 1, got 0"),
    "lora_dropout": (["model.lora.dropout=1.5"], "model.lora.dropout must be < 1"),
    "nan_val_fraction": (["dataset.val_fraction=nan"], "dataset.val_fraction must be a finite"),
    "aqi_gamma_inf": (["eval=aqi", "eval.aqi.gamma=inf"], "eval.aqi.gamma must be a finite"),
    "negative_seed": (["seed=-1"], "seed must be >= 0, got -1"),
    "nan_policy": (["train.nan_policy=ignore"], "train.nan_policy must be one of"),
    "misspelt_key": (["train.max_stepz=3"], "Key 'max_stepz' not in 'TrainConfig'"),
    "appended_key": (["+train.max_stepz=3"], "train.max_stepz is not a key of TrainConfig"),
    "appended_method_key": (["+method.betaa=0.2"], "method.betaa is not a key of DpoConfig"),
    "wrong_type": (["optimizer.lr=abc"], "optimizer.lr=abc"),
    "unknown_option": (["method=dpoo"], "Could not find 'method/dpoo'; options: baseline, cita"),
    "rerun_typo": (["reru=0123abcd"], "reru"),
    "api_key_in_config": (["eval=judge", f"eval.judge.api_key_env={KEY}"], "NAME of the"),
    "api_key_without_judge": ([f"eval.judge.api_key_env={KEY}"], "not the key itself"),
    "api_key_not_a_name": (["eval=judge", "eval.judge.api_key_env=my key"], "variable name"),
    "api_key_interpolated": (
        ["eval=judge", "eval.judge.api_key_env=${oc.env:OPENAI_API_KEY}"],
        "eval.judge.api_key_env must be the NAME",
    ),
    "env_secret_in_a_value": ([f"tracking.run_name=r-{HF_VALUE}"], "secret held in $HF_TOKEN"),
    "token_in_a_tag": (["tag=hf_AbCdEfGhIjKlMnOpQrSt"], "tag: the value looks like an API key"),
    "init_adapter_missing": (
        ["model.init_adapter=/nonexistent/adapter"],
        "model.init_adapter=/nonexistent/adapter: no such directory",
    ),
    "init_adapter_not_an_adapter": (
        [f"model.init_adapter={REPO / 'conf'}"],
        "no adapter_config.json there (not a saved LoRA adapter)",
    ),
    "init_adapter_empty_run": (["model.init_adapter=run:"], "expected run:<MLflow run id>"),
    "stage_trains_nothing": (
        ["experiment=stacked", "method@stages.dpo=baseline"],
        "stages.dpo: method 'baseline' trains nothing; a stage must train",
    ),
}


def cli_error(args: list[str], run_dir, cache_dir, monkeypatch) -> str:
    """train.py's command line in this process (run as __main__, as the shell runs it);
    returns its one-line exit message."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("ALIGNMENT_CACHE", str(cache_dir))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["train.py", *args, f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / "train.py"), run_name="__main__")
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: "), message
    assert "\n" not in message.strip(), message
    return message


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_catalogue_one_line_before_anything_is_written(kind, tmp_path, cache_dir, monkeypatch):
    args, expected = CATALOGUE[kind]
    run_dir = tmp_path / "run"
    message = cli_error(["model=tiny", *args], run_dir, cache_dir, monkeypatch)
    assert expected in message
    assert KEY not in message and HF_VALUE not in message
    assert not run_dir.exists()  # no .hydra/, no train.log, no directory named after it


def _rows(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# kind -> (file name, file content or bytes, extra overrides, what the one line must say)
DATA_CASES = {
    "malformed_json": ("a.jsonl", _rows(GOOD) + '{"prompt": "a",,}\n', [], "a.jsonl:2"),
    "missing_column": ("b.jsonl", _rows({"prompt": "p", "chosen": "c"}), [], "'rejected'"),
    "empty_response": ("c.jsonl", _rows(GOOD, {**GOOD, "chosen": " "}), [], "c.jsonl:2"),
    "not_utf8": ("d.jsonl", b'{"prompt": "caf\xe9"}\n', [], "not valid UTF-8"),
    "bad_factual_flag": (
        "e.jsonl",
        _rows({**GOOD, "h_w": 0, "h_l": 1}, {**GOOD, "h_w": 2, "h_l": 0}),
        ["method=factual_dpo", "method.delta=10"],
        "e.jsonl:2",
    ),
    "sft_rows_for_dpo": ("f.jsonl", _rows(GOOD, {**GOOD, "rejected": ""}), [], "'rejected'"),
    "no_such_file": (None, None, ["dataset.path=/nonexistent/x.jsonl"], "no such file"),
    "no_path": (None, None, [], "dataset=local: needs dataset.path="),
    "unknown_column": (
        "k.jsonl",
        _rows(GOOD),
        ["dataset.columns.promt=q"],
        "Key 'promt' not in 'ColumnsConfig'",
    ),
    "unsupported_type": ("g.txt", "hello\n", [], "unsupported file type"),
    "every_row_too_long": (
        "h.jsonl",
        _rows(*[{**GOOD, "chosen": "word " * 400}] * 3),
        ["dataset.val_fraction=0"],
        "no training row fits dataset.max_length",
    ),
}


@pytest.mark.parametrize("kind", sorted(DATA_CASES))
def test_catalogue_bad_data_one_line_nothing_trained(kind, tmp_path, cache_dir, monkeypatch):
    name, content, extra, expected = DATA_CASES[kind]
    args = ["model=tiny", "dataset=local", f"tracking.uri=sqlite:///{tmp_path}/m.db", *extra]
    if name is not None:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        args.append(f"dataset.path={path}")
    run_dir = tmp_path / "run"
    message = cli_error(args, run_dir, cache_dir, monkeypatch)
    assert expected in message
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "mlflow_run_id").exists()


def test_catalogue_rerun_of_an_unknown_run(tmp_path, cache_dir, monkeypatch):
    db = f"sqlite:///{tmp_path}/m.db"
    args = ["rerun=0123456789abcdef0123456789abcdef", f"tracking.uri={db}"]
    message = cli_error(args, tmp_path / "run", cache_dir, monkeypatch)
    assert message == f"error: rerun=0123456789abcdef0123456789abcdef: no such MLflow run in {db}"


def test_catalogue_init_adapter_of_an_unknown_run(tmp_path, cache_dir, monkeypatch):
    db = f"sqlite:///{tmp_path}/m.db"
    run_id = "0123456789abcdef0123456789abcdef"
    args = ["model=tiny", f"model.init_adapter=run:{run_id}", f"tracking.uri={db}"]
    message = cli_error(args, tmp_path / "run", cache_dir, monkeypatch)
    expected = f"error: model.init_adapter=run:{run_id}: run={run_id}: no such MLflow run in {db}"
    assert message.startswith(expected), message
    assert not (tmp_path / "run" / "mlflow_run_id").exists()


def test_catalogue_covers_at_least_25_kinds():
    """Plus the runtime NaN (test_nan_guard.py) and the subprocess cases above."""
    assert len(CATALOGUE) + len(DATA_CASES) + 1 >= 25
