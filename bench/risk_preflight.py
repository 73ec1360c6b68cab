"""The risk preflight's wall time as a fraction of the training run it guards.

Two legs, each in a fresh process:
  preflight  the preflight as train.py runs it before training, on the run's freshly initialised
             LoRA policy: safety pair batches (the fresh adapter is its own reference, so no
             reference forward), per-sample gradients of the safety DPO loss over the selected
             parameters (torch.func vmap when the model allows, else a loop: printed), thin SVD,
             then the overlap / HVP curvature / forecast of the run's method at the run's lr.
             Timed per phase; "cached" is the same without the subspace (a cache hit: every
             other run of a grid with the same model, seed and safety data).
  train      --steps optimizer steps of our trainer (method=dpo, adamw), the first --warmup left
             out, plus the reference log-prob precompute (refcache) a cold run pays once.

The guarded run is extrapolated honestly from what was measured: reference precompute +
--run-steps x the median measured step. Both the measurement and the extrapolation are printed,
with the ratio preflight / run (target <= 10% for a 200-step SmolLM2 run).

    python bench/risk_preflight.py                      # smollm2_135m on CPU (a few minutes)
    python bench/risk_preflight.py --size 8b            # Llama-3-8B shapes, random NF4, on a GPU
    python bench/risk_preflight.py --tiny               # model=tiny, seconds; run by the tests
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import (
    emit,
    measured,
    median,
    our_trainer,
    peak_memory_mb,
    print_ratio,
    print_table,
    run_leg,
    run_overrides,
    setup_leg,
    setup_run,
    timed_reference,
    train_measured,
)

LEGS = ("preflight", "train")
TARGET = 0.10


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Preflight wall time vs the run it guards.")
    p.add_argument("--model", default="smollm2_135m", help="a conf/model option (CPU path)")
    p.add_argument("--tiny", action="store_true", help="model=tiny, few samples and steps")
    p.add_argument("--size", choices=("cpu", "8b"), default="cpu", help="8b: GPU, NF4 shapes")
    p.add_argument("--samples", type=int, default=128, help="per-sample gradients (max_samples)")
    p.add_argument("--safety-batch", type=int, default=8, help="pairs per vmap batch")
    p.add_argument("--backend", choices=("auto", "vmap", "loop"), default="auto")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per training step")
    p.add_argument("--steps", type=int, default=4, help="measured training steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--run-steps", type=int, default=200, help="the guarded run's length")
    p.add_argument("--seq-len", type=int, default=512, help="8b: tokens per row")
    p.add_argument("--threads", type=int, default=1, help="torch threads of both legs")
    p.add_argument("--worker", choices=LEGS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.samples, args.steps, args.run_steps = "tiny", 16, 3, 20
    return args


def leg_overrides(args: argparse.Namespace, out: Path) -> list[str]:
    model = "model=llama3_8b" if args.size == "8b" else f"model={args.model}"
    return [
        model,
        "method=dpo",
        "optimizer=adamw",
        *run_overrides(out, args.batch_size, args.steps),
        f"train.torch_threads={args.threads}",
    ]


# -- the preflight leg ----------------------------------------------------------------------------
def _policy_and_data(args: argparse.Namespace, out: Path):
    """(cfg, method, device, model, safety rows, training rows, pad id) of this leg."""
    if args.size == "8b":
        from gpu_qlora import SIZES, PadOnly, build_policy, synthetic_pairs

        cfg, method, device = setup_run(leg_overrides(args, out))
        model, _ = build_policy(cfg, "8b", device)
        vocab = SIZES["8b"]["vocab_size"]
        rows = synthetic_pairs(args.samples + 64, args.seq_len, 0.5, vocab, cfg.seed)
        return cfg, method, device, model, rows, rows, PadOnly.pad_token_id
    from alignment.models import load_policy

    cfg, method, device, tokenizer, data = setup_leg(leg_overrides(args, out))
    model = load_policy(cfg.model, cfg.cache_dir, device)
    return cfg, method, device, model, data.train, data.train, tokenizer.pad_token_id


def _sync(device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def preflight_worker(args: argparse.Namespace) -> dict:
    from functools import partial

    from alignment.risk import assess, estimate_subspace, select_parameters
    from alignment.risk.runner import finetune_batches, method_loss
    from alignment.risk.safety import dpo_pair_loss, pair_batches

    out = Path(tempfile.mkdtemp(prefix="risk_bench_"))
    cfg, method, device, model, safety_rows, train_rows, pad = _policy_and_data(args, out)
    t = {"start": _sync(device)}
    selection = select_parameters(model)
    safety = pair_batches(model, safety_rows, pad, batch_size=args.safety_batch,
                          max_pairs=args.samples)  # fmt: skip
    t["safety_batches"] = _sync(device)
    subspace = estimate_subspace(model, selection, safety, partial(dpo_pair_loss, beta=0.1),
                                 max_samples=args.samples, backend=args.backend)  # fmt: skip
    t["subspace"] = _sync(device)
    ft = finetune_batches(train_rows, pad, pairs=True, batch_size=cfg.train.batch_size, count=4,
                          seed=cfg.seed, device=device)  # fmt: skip
    report = assess(model, selection, subspace, ft, method_loss(method, cfg.method),
                    learning_rate=cfg.optimizer.lr)  # fmt: skip
    t["assess"] = _sync(device)
    shutil.rmtree(out, ignore_errors=True)
    names, stamps = list(t), list(t.values())
    phases = {names[i]: stamps[i] - stamps[i - 1] for i in range(1, len(names))}
    return {
        "phases": phases,
        "backend": subspace.backend,
        "n_params": selection.numel,
        "tensors": len(selection.names),
        "rank": subspace.rank,
        "samples": subspace.samples,
        "refined": report.refined,
        "collapse_step": report.forecast.collapse_step,
        "device": str(device),
        **peak_memory_mb(device),
    }


# -- the training leg -----------------------------------------------------------------------------
def train_worker(args: argparse.Namespace) -> dict:
    out = Path(tempfile.mkdtemp(prefix="risk_bench_train_"))
    if args.size == "8b":
        from gpu_qlora import SIZES, PadOnly, build_policy, synthetic_pairs

        from alignment.data.prepare import PreparedData

        cfg, method, device = setup_run(leg_overrides(args, out))
        model, _ = build_policy(cfg, "8b", device)
        rows = synthetic_pairs(args.steps * args.batch_size, args.seq_len, 0.5,
                               SIZES["8b"]["vocab_size"], cfg.seed)  # fmt: skip
        data, tokenizer = PreparedData(rows, None), PadOnly()
    else:
        from alignment.models import load_policy

        cfg, method, device, tokenizer, data = setup_leg(leg_overrides(args, out))
        model = load_policy(cfg.model, cfg.cache_dir, device)
    ref_s = timed_reference(model, data, tokenizer.pad_token_id, cfg.train.batch_size * 2)
    trainer = our_trainer(cfg, method, model, tokenizer, data.train, out, device)
    result = train_measured(trainer, device)
    shutil.rmtree(out, ignore_errors=True)
    return {**result, "reference_s": ref_s, "n_train": len(data.train)}


# -- the parent -----------------------------------------------------------------------------------
def report(args: argparse.Namespace, pre: dict, train: dict) -> dict[str, float]:
    phases = pre["phases"]
    full, cached = sum(phases.values()), phases["assess"]
    step = median(measured(train["steps"], args.warmup))
    run = train["reference_s"] + args.run_steps * step
    print(f"\npreflight ({pre['device']}): {pre['samples']} per-sample gradients by "
          f"{pre['backend'].upper()} over {pre['n_params']:,} parameters ({pre['tensors']} "
          f"tensors), rank {pre['rank']}, refined={pre['refined']}, "
          f"collapse_step={pre['collapse_step']}")  # fmt: skip
    print_table(["phase", "seconds"], [[k, v] for k, v in phases.items()] + [["total", full]])
    g_mb = pre["samples"] * pre["n_params"] * 4 / 2**20
    peak = pre.get("peak_gpu_mb", pre.get("peak_rss_mb", float("nan")))
    kind = "GPU allocator" if "peak_gpu_mb" in pre else "process RSS"
    print(f"memory: per-sample gradient matrix G = {pre['samples']} x {pre['n_params']:,} fp32 = "
          f"{g_mb:.3g} MB; peak {kind} {peak:.4g} MB (weights included)")  # fmt: skip
    print(f"\ntraining: measured {len(train['steps'])} steps (first {args.warmup} dropped): "
          f"median {step:.3g} s/step; reference precompute {train['reference_s']:.3g} s for "
          f"{train['n_train']} pairs")  # fmt: skip
    print(f"extrapolated {args.run_steps}-step run = {train['reference_s']:.3g} + "
          f"{args.run_steps} x {step:.3g} = {run:.4g} s")  # fmt: skip
    ratios = {"preflight/run": full / run, "preflight_cached/run": cached / run}
    for name, value in ratios.items():
        print_ratio(name, value)
    verdict = "met" if ratios["preflight/run"] <= TARGET else "NOT met"
    print(f"goal preflight <= {TARGET:.0%} of a {args.run_steps}-step run: {verdict}")
    return ratios


def main(argv: list[str] | None = None) -> dict[str, float] | None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        emit((preflight_worker if args.worker == "preflight" else train_worker)(args))
        return None
    results = {}
    for leg in LEGS:
        print(f"leg: {leg}", flush=True)
        results[leg] = run_leg(Path(__file__), [*argv, "--worker", leg])
    return report(args, results["preflight"], results["train"])


if __name__ == "__main__":
    main()
