"""method=factual_dpo defaults to the shipped factuality pairs (offline, with h_w/h_l), while
dataset= on the command line or in an experiment still chooses the data."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import compose_cfg, run_train
from tests.test_methods_registry import sweep_jobs


@pytest.mark.parametrize(
    "overrides,dataset",
    [
        ([], "safety_prefs"),  # the demo's data stays the plain default
        (["method=dpo"], "safety_prefs"),
        (["method=cita"], "safety_prefs"),
        (["method=factual_dpo"], "factuality_prefs"),
        (["method=factual_dpo", "method.delta=10"], "factuality_prefs"),
        (["method=factual_dpo", "dataset=hh_rlhf"], "hh_rlhf"),
        (["dataset=hh_rlhf", "method=factual_dpo"], "hh_rlhf"),  # order does not matter
        (["method=factual_dpo", "dataset=aixpert_factuality"], "aixpert_factuality"),
        (["experiment=factual_dpo_delta_grid"], "factuality_prefs"),
        (["experiment=factual_dpo_delta_grid", "dataset=aixpert_factuality"], "aixpert_factuality"),
    ],
)
def test_which_data_a_method_gets(overrides, dataset, tmp_path):
    cfg = compose_cfg(overrides, tmp_path, tmp_path)
    assert cfg.dataset.name == dataset


def test_an_override_keeps_the_chosen_datasets_own_settings(tmp_path):
    cfg = compose_cfg(["method=factual_dpo", "dataset=hh_rlhf"], tmp_path, tmp_path)
    assert (cfg.dataset.data_dir, cfg.dataset.max_length) == ("harmless-base", 512)
    cfg = compose_cfg(["method=factual_dpo", "model=tiny"], tmp_path, tmp_path)
    assert cfg.dataset.max_length == 160  # the tiny x factuality_prefs specialisation


def test_every_delta_of_the_grid_gets_the_offline_data(tmp_path):
    jobs = sweep_jobs("factual_dpo_delta_grid")
    assert len(jobs) == 40  # 10 Deltas x the 4 paper models
    for job in jobs:
        cfg = compose_cfg(job, tmp_path, tmp_path)
        assert (cfg.method.name, cfg.dataset.name) == ("factual_dpo", "factuality_prefs")


def test_factual_dpo_with_a_delta_trains_offline_on_the_default_data(tmp_path, cache_dir):
    """`python train.py method=factual_dpo method.delta=10` (README), shrunk to the tiny model:
    the shipped pairs carry every (h_w, h_l) bucket, and the (1, 0) ones are flipped."""
    db = f"sqlite:///{tmp_path}/m.db"
    args = ["method=factual_dpo", "method.delta=10", "model=tiny", "train.max_steps=2"]
    args += ["train.batch_size=2", "train.samples=0", f"tracking.uri={db}"]
    proc = run_train(args, tmp_path / "run", cache_dir, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = MlflowClient(db).get_run((tmp_path / "run" / "mlflow_run_id").read_text())
    m = run.data.metrics
    buckets = [m[f"data/bucket_{b}"] for b in ("0_1", "1_0", "0_0", "1_1")]
    assert min(buckets) > 0 and sum(buckets) == 88 and m["data/missing"] == 0
    assert m["data/flipped"] == m["data/bucket_1_0"]
    assert run.data.tags["dataset"] == "factuality_prefs" and run.data.tags["delta"] == "10.0"
    assert "train/factual/offset" in m
