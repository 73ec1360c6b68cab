"""The shared reference log-prob cache: reuse across the runs of a grid, recompute when the key
changes, and two processes racing on one key.

The grid-level reuse is checked through bench/refcache_grid.py --tiny, which trains the four
reference-using cells (DPO, stacked CITA, Factual-DPO at two Deltas) against one cache and then
each against its own empty cache, counting reference batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import multiprocessing
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file, save_file

from alignment.refcache import REFERENCE_BATCHES, cache_key
from bench import refcache_grid
from bench.refcache_grid import fresh_cache, write_flagged_pairs
from tests.conftest import compose_cfg


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory) -> str:
    """The MLflow store the method tests share (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.getbasetemp() / 'methods_grid_mlflow.db'}"


# -- the grid: one reference pass for four cells ---------------------------------------------------
@pytest.fixture(scope="module")
def bench_tiny(tmp_path_factory, cache_dir, grid_db):
    """bench/refcache_grid.py --tiny, in this process: (its results, its printed report)."""
    work = tmp_path_factory.mktemp("refcache_bench")
    argv = [
        "--tiny",
        "--workdir",
        str(work),
        "--weights-cache",
        str(cache_dir),
        "--tracking-uri",
        grid_db,
    ]
    with contextlib.redirect_stdout(io.StringIO()) as report:
        results = refcache_grid.main(argv)
    return results, report.getvalue()


def test_bench_tiny_reports_one_pass_for_four_cells(bench_tiny):
    results, report = bench_tiny
    totals = results["totals"]
    assert totals["shared"]["passes"] == 1 and totals["fresh"]["passes"] == 4
    assert totals["fresh"]["batches"] == 4 * totals["shared"]["batches"] > 0
    assert all(t["wall_s"] > 0 for t in totals.values())
    assert "ratio reference_batches fresh/shared = 4.000" in report
    assert re.search(r"^ratio wall_time fresh/shared = \d+\.\d{3}$", report, re.M)
    assert "shared used 1, fresh used 4" in report
    for cell in refcache_grid.CELLS:
        assert len(re.findall(rf"^{cell} +(shared|fresh) ", report, re.M)) == 2, cell


def test_second_run_with_the_same_key_does_no_reference_forward(bench_tiny, grid_db):
    shared = [r for r in bench_tiny[0]["runs"] if r["mode"] == "shared"]
    first, rest = shared[0], shared[1:]
    assert (first["passes"], first["hits"]) == (1, 0) and first["batches"] > 0
    for run in rest:  # stacked CITA and Factual-DPO at both Deltas reuse DPO's pass
        assert (run["passes"], run["hits"], run["batches"]) == (0, 1, 0), run
    client = MlflowClient(grid_db)
    exp = client.get_experiment_by_name("refcache_grid")
    runs = client.search_runs([exp.experiment_id], "tags.bench_mode = 'shared'")
    assert len(runs) == 4
    for run in runs:
        hit = run.data.metrics["refcache/hit"]
        assert hit == (0.0 if run.data.tags["method"] == "dpo" else 1.0)
        assert run.data.metrics["train/reference_forwards"] == 0.0


# -- the key -------------------------------------------------------------------------------------
def _pairs_with_long_rows(path):
    write_flagged_pairs(path, 12)
    long = {
        "prompt": "Describe the water cycle in detail. " * 12,
        "chosen": "Evaporation, condensation, precipitation.",
        "rejected": "It has no steps.",
        "h_w": 0,
        "h_l": 1,
    }
    with path.open("a") as f:
        f.write(json.dumps(long) + "\n" + json.dumps(long | {"prompt": "Why? " + long["prompt"]}))
    return path


def test_changed_max_length_recomputes_and_the_same_key_reloads(tmp_path, cache_dir):
    from alignment.data.prepare import prepare_data
    from alignment.methods import get_method
    from alignment.models import load_policy, load_tokenizer, pick_device

    data_path = _pairs_with_long_rows(tmp_path / "pairs.jsonl")
    cache = fresh_cache(tmp_path / "cache", cache_dir)
    policy = None

    def reference(max_length: int):
        nonlocal policy
        overrides = [
            "model=tiny",
            "method=dpo",
            "dataset=local",
            f"dataset.path={data_path}",
            f"dataset.max_length={max_length}",
        ]
        cfg = compose_cfg(overrides, tmp_path / "out", cache)
        data = prepare_data(cfg, get_method(cfg.method), load_tokenizer(cfg.model, cfg.cache_dir))
        policy = policy or load_policy(cfg.model, cfg.cache_dir, pick_device("cpu"))
        before = dict(REFERENCE_BATCHES)
        refs = data.reference(policy)
        delta = {k: REFERENCE_BATCHES[k] - before[k] for k in before}
        return data, refs, delta

    data, refs, first = reference(1024)
    assert data.counts["data/train_filtered_too_long"] == 0 and first["misses"] == 1
    assert first["computed"] > 0
    _, again, second = reference(1024)
    assert second == {"computed": 0, "hits": 1, "misses": 0}
    assert all(torch.equal(a, b) for s in refs for a, b in zip(refs[s], again[s], strict=True))
    short, _, third = reference(128)  # the two long rows no longer fit: other rows, other key
    dropped = short.counts["data/train_filtered_too_long"] + short.counts.get(
        "data/val_filtered_too_long", 0.0
    )
    assert dropped == 2 and third["misses"] == 1 and third["computed"] > 0
    # A max_length that keeps the same rows gives the same token ids, so the same key.
    _, _, fourth = reference(1000)
    assert fourth == {"computed": 0, "hits": 1, "misses": 0}
    files = sorted((cache / "refcache").glob("*.safetensors"))
    assert len(files) == 2 and not list((cache / "refcache").glob("*.tmp"))
    assert all(t.dtype == torch.float32 for f in files for t in load_file(str(f)).values())


def test_key_covers_the_base_model_not_the_method(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt_ids": [[1, 2]], "chosen_ids": [[3]], "rejected_ids": [[4]]})
    base = compose_cfg(["model=tiny", "method=dpo"], tmp_path, tmp_path)
    key = cache_key(base, {"train": ds})
    others = (["method=factual_dpo", "method.delta=50"], ["method=cita", "optimizer=grit"])
    same = [compose_cfg(["model=tiny", *o], tmp_path, tmp_path) for o in others]
    assert all(cache_key(c, {"train": ds}) == key for c in same)
    for change in ({"dtype": "bfloat16"}, {"quantization": "4bit"}, {"tiny_hidden": 32}):
        other = dataclasses.replace(base, model=dataclasses.replace(base.model, **change))
        assert cache_key(other, {"train": ds}) != key, change
    edited = Dataset.from_dict({"prompt_ids": [[1, 2]], "chosen_ids": [[3]], "rejected_ids": [[5]]})
    assert cache_key(base, {"train": edited}) != key


# -- two processes racing on one key ---------------------------------------------------------------
class SlowStub(torch.nn.Module):
    """A stand-in policy: deterministic logits from the token ids, and a slow forward that keeps
    the race window open. `disable_adapter` is what the cache calls to get the reference."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(50, 50, generator=g))

    @contextlib.contextmanager
    def disable_adapter(self):
        yield

    def forward(self, input_ids, attention_mask, logits_to_keep=0, use_cache=False):
        time.sleep(0.3)
        logits = self.table[input_ids]
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def _racer(work: Path, me: str, start) -> None:
    """One process of the race: builds the same data and key as the other, waits for it at the
    barrier, then loads or computes the cache entry and writes what it got."""
    from datasets import Dataset

    from alignment.config import ModelConfig, TrainConfig
    from alignment.refcache import reference_fn

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    rows = [
        [torch.randint(1, 50, (n,), generator=g).tolist() for n in (3 + i % 4, 2 + i % 3, 4)]
        for i in range(12)
    ]
    ds = Dataset.from_dict(
        {
            "prompt_ids": [r[0] for r in rows],
            "chosen_ids": [r[1] for r in rows],
            "rejected_ids": [r[2] for r in rows],
            "h_w": [0] * 12,
            "h_l": [0] * 12,
            "length": [len(r[0]) + max(len(r[1]), len(r[2])) for r in rows],
            "index": list(range(12)),
        }
    )
    model, train = ModelConfig(name="tiny", source="tiny"), TrainConfig(batch_size=2)
    cfg = SimpleNamespace(model=model, cache_dir=str(work / "cache"), train=train)
    load_or_compute = reference_fn(cfg, SimpleNamespace(train=ds, val=None, counts={}), 0)
    before = dict(REFERENCE_BATCHES)
    start.wait(timeout=60)
    refs = load_or_compute(SlowStub())
    save_file({"chosen": refs["train"][0], "rejected": refs["train"][1]}, str(work / f"{me}.st"))
    counts = {k: REFERENCE_BATCHES[k] - before[k] for k in before}
    (work / f"{me}.json").write_text(json.dumps(counts))


def test_two_processes_racing_on_one_key_both_finish_with_identical_tensors(tmp_path):
    # fork: the children start with this process's imports, so they reach the barrier at once.
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_racer, args=(tmp_path, n, start)) for n in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    counts = [json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab"]
    assert sorted(c["misses"] for c in counts) == [0, 1]  # one computed, the other waited
    assert sorted(c["hits"] for c in counts) == [0, 1]  # ... and then read its file
    assert sorted(c["computed"] for c in counts) == [0, 3]  # 12 rows in batches of 4
    a, b = (load_file(str(tmp_path / f"{n}.st")) for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in ("chosen", "rejected"))
    (entry,) = (tmp_path / "cache" / "refcache").glob("*.safetensors")
    assert {t.shape for t in load_file(str(entry)).values()} == {(12,)}
    assert not list((tmp_path / "cache" / "refcache").glob("*.tmp"))
