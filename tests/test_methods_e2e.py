"""Every method of the grid end to end on the tiny model: a few training steps through
`run_training`, then its diagnostics read back from MLflow; and Factual-DPO's input errors.

The data is a local jsonl with an instruction column (CITA puts it in the system turn) and all
four (h_w, h_l) buckets, so Factual-DPO flips its (1, 0) pairs and logs the bucket counts.
"""

from __future__ import annotations

import gc
import json
import math

import pytest
from mlflow.tracking import MlflowClient

from alignment.data.types import DataError
from alignment.pipeline import run_training
from bench.refcache_grid import write_flagged_pairs
from tests.conftest import compose_cfg

ROWS = 12  # 3 per bucket
PAIR = (
    "train/loss",
    "train/rewards/accuracy",
    "train/rewards/margins",
    "train/rewards/chosen",
    "train/logps/chosen",
    "train/logps/rejected",
    "train/reference_forwards",
)
CITA = (*PAIR, "train/cita/kl", "train/cita/contrastive", "train/logps/ref_chosen")
BUCKETS = ("data/bucket_0_1", "data/bucket_1_0", "data/bucket_0_0", "data/bucket_1_1")
RUNS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "baseline": (["method=baseline"], ("data/train_examples",)),
    "sft": (["method=sft"], ("train/loss", "train/logps/chosen", "train/sft/token_logp")),
    "dpo": (["method=dpo"], PAIR),
    "cita_seq_logratio": (["method=cita", "method.kl_estimator=seq_logratio"], CITA),
    "cita_seq_sq": (["method=cita", "method.kl_estimator=seq_sq"], CITA),
    "cita_token_full_vocab": (["method=cita", "method.kl_estimator=token_full_vocab"], CITA),
    "factual_dpo": (
        ["method=factual_dpo", "method.delta=10"],
        (*PAIR, "train/factual/offset", "train/factual/z", *BUCKETS, "data/flipped"),
    ),
    "ipo": (["method=ipo"], (*PAIR, "train/ipo/h")),
    "hinge": (["method=hinge"], (*PAIR, "train/hinge/active")),
    "robust": (["method=robust"], (*PAIR, "train/robust/dpo")),
    "simpo": (["method=simpo"], (*PAIR, "train/simpo/z")),
    "orpo": (["method=orpo"], (*PAIR, "train/orpo/log_odds", "train/orpo/nll")),
    "sigmoid_norm": (["method=sigmoid_norm"], (*PAIR, "train/sigmoid_norm/z")),
}
# Methods whose end-to-end tests live beside their own machinery.
E2E_ELSEWHERE: set[str] = set()


def test_every_registered_method_trains_here_or_elsewhere():
    from alignment.methods import METHODS

    covered = {overrides[0].removeprefix("method=") for overrides, _ in RUNS.values()}
    assert set(METHODS.names()) - covered == E2E_ELSEWHERE


def tiny_overrides(data, db: str, name: str) -> list[str]:
    return [
        "model=tiny",
        "dataset=local",
        f"dataset.path={data}",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.logging_steps=1",
        "train.samples=0",
        "train.torch_threads=1",
        "train.reference=cached",  # under `auto` a 2-step run would run the reference online
        f"tracking.uri={db}",
        "tracking.experiment=methods_e2e",
        f"tracking.run_name={name}",
    ]


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory) -> str:
    """One MLflow store for the method tests of the session (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.getbasetemp() / 'methods_grid_mlflow.db'}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir, grid_db):
    """Trains every entry of RUNS once; name -> MLflow run."""
    tmp = tmp_path_factory.mktemp("methods_e2e")
    data = write_flagged_pairs(
        tmp / "pairs.jsonl",
        ROWS,
        unflipped=True,
        instruction="Answer factually and say so when unsure.",
    )
    client, out = MlflowClient(grid_db), {}
    gc.freeze()  # each run ends in gc.collect(): skip rescanning the test process's imports
    try:
        for name, (overrides, _) in RUNS.items():
            overrides = [*tiny_overrides(data, grid_db, name), *overrides]
            run_training(compose_cfg(overrides, tmp / name, cache_dir))
            out[name] = client.get_run((tmp / name / "mlflow_run_id").read_text().strip())
    finally:
        gc.unfreeze()
    return out


def history(db: str, run, key: str) -> list[float]:
    return [m.value for m in MlflowClient(db).get_metric_history(run.info.run_id, key)]


@pytest.mark.parametrize("name", list(RUNS))
def test_method_trains_and_logs_its_diagnostics(runs, name):
    run = runs[name]
    assert run.info.status == "FINISHED"
    assert run.data.tags["method"] == RUNS[name][0][0].removeprefix("method=")
    missing = [k for k in RUNS[name][1] if k not in run.data.metrics]
    assert not missing, f"{name} did not log {missing}; it logged {sorted(run.data.metrics)}"
    trained = "train/loss" in run.data.metrics
    assert trained == (name != "baseline")


@pytest.mark.parametrize("name", ["cita_seq_logratio", "cita_seq_sq", "cita_token_full_vocab"])
def test_cita_kl_starts_at_zero(runs, grid_db, name):
    """LoRA's B starts at zero, so at the first step the policy is the reference: every
    estimator gives 0 (up to the float noise of a differently padded reference batch)."""
    kl = history(grid_db, runs[name], "train/cita/kl")
    assert len(kl) == 2 and abs(kl[0]) < 1e-4
    if name != "cita_seq_logratio":
        assert min(kl) >= -1e-6  # seq_sq and the exact KL are non-negative


@pytest.mark.parametrize("name", ["dpo", "factual_dpo"])
def test_first_step_rewards_are_zero_against_the_cached_reference(runs, grid_db, name):
    """Step 1: LoRA's B starts at zero, so the policy is pi_ref and every implicit reward
    beta * (log pi - log pi_ref) is 0, which holds only if the cache hands each row its own
    chosen and rejected reference log-probs (Factual-DPO's flipped pairs included); DPO's loss
    is then ln 2."""
    for key in ("train/rewards/chosen", "train/rewards/rejected", "train/rewards/margins"):
        assert abs(history(grid_db, runs[name], key)[0]) < 1e-5, key
    if name == "dpo":
        assert abs(history(grid_db, runs[name], "train/loss")[0] - math.log(2)) < 1e-5


def test_reference_comes_from_the_cache_except_for_the_full_vocab_kl(runs, grid_db):
    for name in ("dpo", "cita_seq_logratio", "cita_seq_sq", "factual_dpo"):
        assert history(grid_db, runs[name], "train/reference_forwards")[-1] == 0.0, name
        assert "refcache/hit" in runs[name].data.metrics, name
    # token_full_vocab needs the reference's full logits: an online forward per micro-batch.
    online = runs["cita_token_full_vocab"]
    assert history(grid_db, online, "train/reference_forwards")[-1] >= 2
    assert "refcache/hit" not in online.data.metrics


def test_factual_dpo_bucket_counts_flip_and_offset(runs, grid_db):
    run = runs["factual_dpo"]
    counts = {k: run.data.metrics[k] for k in (*BUCKETS, "data/flipped", "data/missing")}
    assert counts == dict.fromkeys(BUCKETS, ROWS / 4) | {"data/flipped": 3.0, "data/missing": 0.0}
    # After the flip every pair is (0,1) or same-factuality: offsets are Delta * {0, 1} >= 0.
    offsets = history(grid_db, run, "train/factual/offset")
    assert all(0.0 <= v <= 10.0 for v in offsets)
    assert run.data.params["method.delta"] == "10.0" and run.data.tags["delta"] == "10.0"


# -- bad input fails before training --------------------------------------------------------------
def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pair(i, **flags):
    return {"prompt": f"Question {i}?", "chosen": f"Right {i}.", "rejected": f"Wrong {i}.", **flags}


def _fails_before_training(path, overrides, tmp_path, cache_dir, grid_db) -> str:
    out = tmp_path / "run"
    cfg = compose_cfg([*tiny_overrides(path, grid_db, "bad"), *overrides], out, cache_dir)
    with pytest.raises(DataError) as err:
        run_training(cfg)
    assert not (out / "mlflow_run_id").exists()  # no MLflow run, no model, no step
    message = str(err.value)
    assert "\n" not in message
    return message


def test_factual_dpo_without_flags_names_file_row_and_field(tmp_path, cache_dir, grid_db):
    path = _write(tmp_path / "noflags.jsonl", [_pair(i) for i in range(4)])
    msg = _fails_before_training(
        path, ["method=factual_dpo", "method.delta=4"], tmp_path, cache_dir, grid_db
    )
    assert f"{path}:1" in msg and "'h_w'" in msg and "delta" in msg


def test_factual_dpo_flag_of_2_names_the_row(tmp_path, cache_dir, grid_db):
    rows = [_pair(1, h_w=0, h_l=1), _pair(2, h_w=1, h_l=1), _pair(3, h_w=0, h_l=2)]
    path = _write(tmp_path / "badflag.jsonl", rows)
    msg = _fails_before_training(
        path, ["method=factual_dpo", "method.delta=4"], tmp_path, cache_dir, grid_db
    )
    assert f"{path}:3" in msg and "'h_l'" in msg and "must be 0 or 1, got 2" in msg
