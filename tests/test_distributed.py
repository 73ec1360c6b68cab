"""Multi-rank runs over torch.distributed (gloo on CPU).

Fast: two spawned gloo ranks check the collectives and their maths (GRIT's factors and loss
history, the logged sums, rank 0's failures reaching the others); the strategy, config and
launcher checks need no process group.

Slow: train.py under torchrun with 2 ranks against 1 rank on the same global batch (2x2 vs 1x4):
the loss at every step and the final adapter agree within 1e-5, for dpo+adamw (with the
reference cache computed sharded), dpo+grit (every GRIT event inside the run) and sft (the
token-mean path); a rank killed mid-run fails the job with one line and no hang, and the same
command then resumes it into the same MLflow run and ends where an uninterrupted run ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from alignment import distributed
from tests._ranks import free_port, grit_factors, worker
from tests.conftest import REPO, compose_cfg

# ---------------------------------------------------------------------------------------------
# Fast: collectives in two spawned gloo ranks.


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_grit_factors_of_two_ranks_equal_one_rank_on_the_global_batch(two_ranks):
    """Each rank's loss is the mean over its 2 rows, so its g_y is twice the global loss's: the
    factors match one rank's only with the sums all-reduced AND v's moment divided by 2² (a
    missing reduction halves n_a, a missing rescale quadruples Σ_g)."""
    one = grit_factors(0, 1)
    for rank in two_ranks:
        for key in ("cov_a", "cov_g", "n_a", "n_g", "losses"):
            torch.testing.assert_close(rank["grit"][key], one[key], rtol=1e-5, atol=1e-7)
    assert one["n_a"].item() == 2 * 4 * 7  # two captures of 4 rows x 7 tokens


def test_logged_sums_are_reduced_over_ranks(two_ranks):
    """Rank r logs a = r + 1 once and 2 steps' worth 1/GA: a's mean over the global batch is
    (1 + 2) / (2 + 2) counts, steps stay 2 (every rank counts the same optimizer steps)."""
    for rank in two_ranks:
        names, totals, counts = rank["logged"]
        assert names == ["a", "steps"] and totals == [3.0, 2.0]
        assert counts == {"a": 4, "steps": 8}


def test_rank_zero_failure_reaches_the_others(two_ranks):
    assert two_ranks[0]["main_first"] == "own error: bad row 3"
    assert two_ranks[1]["main_first"] == "rank 1: rank 0 failed: ValueError: bad row 3"
    assert [r["broadcast"] for r in two_ranks] == [{"rank": 0}, {"rank": 0}]
    assert {r["device"] for r in two_ranks} == {"cpu"}


# ---------------------------------------------------------------------------------------------
# Fast: strategies, configs, launcher checks (no process group).


def test_single_process_is_untouched():
    assert not distributed.is_distributed() and distributed.world_size() == 1
    assert distributed.trainer_args("fsdp", torch.nn.Linear(2, 2)) == {}
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t and distributed.broadcast("x") == "x"
    assert distributed.failure_line(RuntimeError("Connection closed by peer")) is None


def test_fsdp_wraps_the_decoder_layer_and_refuses_other_models():
    from tests.optim.test_grit import tiny_linear, tiny_llama

    assert distributed.fsdp_layer_class(tiny_llama()) == "LlamaDecoderLayer"
    with pytest.raises(distributed.StrategyError, match="cannot wrap Sequential") as err:
        distributed.fsdp_layer_class(tiny_linear())
    assert "\n" not in str(err.value) and "train.distributed=ddp" in str(err.value)


def test_fsdp_arguments_reach_the_trainer_plugin(tmp_path):
    """The arguments trainer_args passes on GPU ranks become accelerate's FSDP2 plugin with a
    full-shard auto-wrap policy on the decoder layer class."""
    from transformers import TrainingArguments

    fsdp = distributed.fsdp_args("LlamaDecoderLayer")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **fsdp)
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["reshard_after_forward"] is True
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"


def test_qlora_under_fsdp_stores_4bit_weights_in_the_model_dtype(tmp_path, cache_dir):
    """peft's FSDP-QLoRA recipe: bnb_4bit_quant_storage = the model's float dtype."""
    from alignment.models import _quantization

    cfg = compose_cfg(["model=llama3_8b"], tmp_path, cache_dir).model
    assert _quantization(cfg, fsdp=True).bnb_4bit_quant_storage == torch.bfloat16
    assert _quantization(cfg).bnb_4bit_quant_storage == torch.uint8  # unchanged without FSDP


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.distributed=zero3"], r"train.distributed must be one of \('ddp', 'fsdp'\)"),
        (["train.distributed=fsdp", "optimizer=grit"], "does not support optimizer=grit"),
        (["train.distributed=fsdp", "eval_after_train=true"], "does not support eval_after_"),
    ],
)
def test_bad_strategy_fails_at_compose(overrides, message, tmp_path, cache_dir):
    with pytest.raises(Exception, match=message):
        compose_cfg(["model=tiny", *overrides], tmp_path, cache_dir)


def test_launcher_takes_one_task_per_gpu():
    from omegaconf import OmegaConf

    from alignment.config.sweep import SweepParentRun, check_launcher

    check_launcher(OmegaConf.create({"tasks_per_node": 4, "gpus_per_node": 4}))
    check_launcher(OmegaConf.create({"tasks_per_node": 2, "gpus_per_node": None}))  # CPU nodes
    check_launcher(OmegaConf.create({"_target_": "basic"}))
    bad = OmegaConf.create({"tasks_per_node": 2, "gpus_per_node": 4})
    with pytest.raises(ValueError, match="tasks_per_node=2 but hydra.launcher.gpus_per_node=4"):
        check_launcher(bad)
    # Hydra turns a callback's exceptions into warnings: the sweep must exit instead.
    cfg = OmegaConf.create({"hydra": {"launcher": bad}, "tracking": {"enabled": False}})
    with pytest.raises(SystemExit, match="^error: hydra.launcher.tasks_per_node=2"):
        SweepParentRun().on_multirun_start(cfg)


# ---------------------------------------------------------------------------------------------
# Slow: train.py under torchrun, 2 ranks x 2 rows against 1 rank x 4 rows.

COMMON = ["model=tiny", "train.samples=0", "train.torch_threads=1", "train.save_steps=4"]
GRIT = [
    "optimizer=grit",
    "optimizer.cov_update_freq=1",
    "optimizer.kfac_update_freq=2",
    "optimizer.reprojection_freq=4",
    "optimizer.reprojection_warmup_steps=2",
    "optimizer.kfac_min_samples=1",
    # Padding tokens would count in the statistics, and a 2x2 split pads less than 1x4.
    "optimizer.stats_mask=attention",
    "optimizer.lambda_kfac=1e-3",
    "optimizer.lambda_reproj=1e-3",
]
CASES = {
    # 12 steps: adaptive damping (more than 10 losses) is in use at the step-12 inversion.
    "dpo-adamw": ["method=dpo", "train.max_steps=12", "train.reference=cached"],
    "dpo-grit": ["method=dpo", "train.max_steps=12", *GRIT],
    "sft": ["method=sft", "train.max_steps=8", "optimizer.lr=1e-3"],
}


def run(args: list[str], run_dir: Path, cache: Path, ranks: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = "1"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launch += [f"--nproc_per_node={ranks}"]
    cmd = [*launch, "train.py", *COMMON, *args, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


def assert_each_metric_once(client: MlflowClient, run_id: str, last_step: int) -> None:
    """One value per metric and step, as one process logs them: the Trainer's end-of-training
    summary repeats epoch and reference_forwards at the last step, and nothing else repeats."""
    for key in client.get_run(run_id).data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        repeated = {s: steps.count(s) for s in steps if steps.count(s) > 1}
        if key in ("train/epoch", "train/reference_forwards"):
            assert repeated in ({}, {last_step: 2}), (key, steps)
        else:
            assert not repeated, (key, steps)


def history(db: str, run_dir: Path, key: str) -> list[tuple[int, float]]:
    run_id = (run_dir / "mlflow_run_id").read_text()
    return sorted((m.step, m.value) for m in MlflowClient(db).get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """name -> (db, one-rank dir, two-rank dir, two-rank cache), run once per module."""
    done = {}

    def get(name: str):
        if name not in done:
            tmp = tmp_path_factory.mktemp(name)
            db = f"sqlite:///{tmp}/m.db"
            args = [*CASES[name], f"tracking.uri={db}", f"tracking.experiment={name}"]
            # Separate caches: each side computes its own reference log-probs (sharded on 2).
            run([*args, "train.batch_size=4"], tmp / "one", tmp / "cache1", ranks=1)
            run([*args, "train.batch_size=2"], tmp / "two", tmp / "cache2", ranks=2)
            done[name] = (db, tmp / "one", tmp / "two", tmp / "cache2")
        return done[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_two_ranks_match_one_rank(name, pairs):
    db, one, two, _ = pairs(name)
    losses_1, losses_2 = history(db, one, "train/loss"), history(db, two, "train/loss")
    steps = int(next(a for a in CASES[name] if "max_steps" in a).split("=")[1])
    assert [s for s, _ in losses_1] == [s for s, _ in losses_2] == list(range(1, steps + 1))
    for (step, a), (_, b) in zip(losses_1, losses_2, strict=True):
        assert abs(a - b) < 1e-5, (step, a, b)
    adapter_1 = load_file(one / "adapter" / "adapter_model.safetensors")
    adapter_2 = load_file(two / "adapter" / "adapter_model.safetensors")
    assert adapter_1.keys() == adapter_2.keys()
    for key in adapter_1:
        assert (adapter_1[key] - adapter_2[key]).abs().max() < 1e-5, key
    assert any(t.abs().max() > 0 for k, t in adapter_2.items() if "lora_B" in k)  # it trained


@pytest.mark.slow
def test_two_rank_run_is_one_mlflow_run_with_each_metric_once(pairs):
    db, one, two, cache = pairs("dpo-adamw")
    client = MlflowClient(db)
    run_id = (two / "mlflow_run_id").read_text()
    runs = client.search_runs([client.get_run(run_id).info.experiment_id])
    assert len(runs) == 2  # the 1-rank run and this one: one per job, not one per rank
    metrics = client.get_run(run_id).data.metrics
    one_id = (one / "mlflow_run_id").read_text()
    assert metrics.keys() == client.get_run(one_id).data.metrics.keys()
    for key in metrics:  # what one process logs, once: rank 1 logged nothing of its own
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == sorted(m.step for m in client.get_metric_history(one_id, key)), key
    assert_each_metric_once(client, run_id, last_step=12)
    assert metrics["data/train_examples"] == 534 and metrics["refcache/hit"] == 0.0
    text = (two / "train.log").read_text()
    assert "rank 0 of 2 joined the gloo process group" in text
    assert "[rank 1]" not in text  # rank 1 logs warnings only, and there were none
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "checkpoint-12",
        "checkpoint-8",
    ]
    # The sharded reference pass and one rank's pass wrote the same values.
    (entry,) = (cache / "refcache").glob("*.safetensors")
    (one_entry,) = (cache.parent / "cache1" / "refcache").glob("*.safetensors")
    a, b = load_file(entry), load_file(one_entry)
    assert all((a[k] - b[k]).abs().max() < 1e-3 for k in a) and a.keys() == b.keys()


@pytest.mark.slow
def test_dead_rank_fails_the_job_and_a_rerun_resumes(tmp_path, pairs):
    """kill -9 of rank 1 after checkpoint-4: rank 0 stops with one line (not a hang); the same
    command then resumes both ranks from the last complete checkpoint into the same MLflow run,
    and the final loss equals the uninterrupted 2-rank run's."""
    ref_db, _, ref_two, cache = pairs("dpo-adamw")
    db = f"sqlite:///{tmp_path}/kill.db"
    args = [*COMMON, *CASES["dpo-adamw"], "train.batch_size=2", f"tracking.uri={db}"]
    run_dir = tmp_path / "run"
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
        cmd = [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"]
        procs.append(
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    deadline = time.monotonic() + 600
    while not (run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").is_file():
        assert procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint-4 after 600 s"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].communicate()
    try:
        _, err = procs[0].communicate(timeout=120)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        raise AssertionError("rank 0 hung after rank 1 died") from None
    err = err.decode()
    assert procs[0].returncode == 1, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: rank 0 of 2: another rank of this job stopped"), line
    assert "Traceback" not in err, err[-3000:]
    assert not (run_dir / "DONE").exists()
    run_id = (run_dir / "mlflow_run_id").read_text()

    again = run(args, run_dir, cache, ranks=2)  # the requeue: the same command
    log = again.stdout + again.stderr
    assert "resuming from" in log and "resuming MLflow run" in log
    assert (run_dir / "mlflow_run_id").read_text() == run_id
    client = MlflowClient(db)
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    assert client.get_run(run_id).info.status == "FINISHED"
    resumed, plain = history(db, run_dir, "train/loss"), history(ref_db, ref_two, "train/loss")
    assert resumed[-1][0] == plain[-1][0] == 12
    assert abs(resumed[-1][1] - plain[-1][1]) < 1e-5


@pytest.mark.slow
def test_local_launcher_runs_each_cell_as_one_two_rank_job(tmp_path, cache_dir):
    """submitit's local executor with tasks_per_node=2: one cell, two processes, one process
    group, one MLflow run (besides the sweep's parent) with every metric once per step."""
    db = f"sqlite:///{tmp_path}/m.db"
    sweep = tmp_path / "sweep"
    no_local = ["~local"] if (REPO / "conf" / "local" / "default.yaml").is_file() else []
    cmd = [sys.executable, "train.py", "-m", "hydra/launcher=local"]
    cmd += ["hydra.launcher.tasks_per_node=2", "model=tiny", "method=dpo", *no_local]
    cmd += ["train.max_steps=3", "train.samples=0", "train.torch_threads=1"]
    cmd += [f"tracking.uri={db}", "tracking.experiment=local2", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (done,) = sweep.glob("*/DONE")
    assert "rank 0 of 2 joined the gloo process group" in (done.parent / "train.log").read_text()
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("local2").experiment_id])
    (cell,) = [r for r in runs if r.data.tags.get("kind") != "sweep"]
    assert cell.info.run_id == (done.parent / "mlflow_run_id").read_text()
    assert cell.info.status == "FINISHED"
    assert_each_metric_once(client, cell.info.run_id, last_step=3)
    losses = client.get_metric_history(cell.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == [1, 2, 3]


@pytest.mark.slow
def test_fsdp_on_cpu_stops_with_one_line(tmp_path, cache_dir):
    """accelerate enables the Trainer's FSDP on GPU ranks only: on CPU every rank stops before
    training with one line, rather than train plain DDP under an FSDP label."""
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["train.py", *COMMON, "train.distributed=fsdp", "train.max_steps=1"]
    cmd += ["tracking.enabled=false", f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    line = "error: train.distributed=fsdp needs CUDA GPUs (accelerate enables the Trainer's FSDP"
    # Each rank stops on its own (torchrun may stop the second first): no traceback of ours.
    assert line in proc.stderr and "StrategyError" not in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints").exists()
