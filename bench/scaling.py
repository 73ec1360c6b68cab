"""Multi-rank scaling: tokens/s of the same training run at 1, 2, 4 and 8 ranks, and the scaling
efficiency tokens_per_s(N) / (N * tokens_per_s(1)) (the DDP target on one node is >= 0.9).

Each leg is `torchrun --nproc_per_node=N train.py ...` in a fresh process group, with the same
per-rank batch (weak scaling, as a real multi-GPU cell grows its global batch with its GPUs).
Tokens/s is the run's own `train/tokens_per_s` from MLflow, which the trainer sums over ranks
before logging: the median over the steps after the warm-up ones.

    python bench/scaling.py                   # GPUs: 1, 2, 4, 8 ranks, as many as there are GPUs
    python bench/scaling.py --strategy fsdp   # the same with train.distributed=fsdp (GPUs only)
    python bench/scaling.py --size tiny       # CPU: 1 vs 2 gloo ranks on model=tiny, 1 thread each

On CPU the ranks share the machine's cores, so the tiny mode's efficiency says little about
GPUs; it exists so that the benchmark is tested end to end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, bench_env, print_ratio, print_table

SIZES = {
    # name: (overrides, ranks, steps) for the legs of that size
    "tiny": (["model=tiny", "train.batch_size=2", "train.torch_threads=1"], [1, 2], 8),
    "smollm2": (["model=smollm2_135m", "train.batch_size=8"], [1, 2, 4, 8], 40),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="smollm2")
    p.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per leg")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the median")
    p.add_argument("--max-ranks", type=int, default=None, help="default: the GPUs present")
    p.add_argument("overrides", nargs="*", help="extra train.py overrides for every leg")
    return p.parse_args(argv)


def rank_counts(args: argparse.Namespace) -> list[int]:
    counts = SIZES[args.size][1]
    if args.max_ranks is not None:
        limit = args.max_ranks
    elif args.size == "tiny":
        limit = 2
    else:
        import torch

        limit = torch.cuda.device_count()
    return [n for n in counts if n <= limit] or [1]


def run_leg(args: argparse.Namespace, ranks: int, work: Path) -> dict:
    """One torchrun job of `ranks` ranks; returns its per-step tokens/s and final loss."""
    overrides, _, steps = SIZES[args.size]
    steps = args.steps or steps
    db = f"sqlite:///{work}/scaling.db"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={ranks}", str(REPO / "train.py"), *overrides]
    cmd += [
        "method=dpo",
        "train.reference=online",  # every leg does the same work per step
        f"train.max_steps={steps}",
        "train.logging_steps=1",
        "train.save_steps=100000",
        "train.samples=0",
        f"train.distributed={args.strategy}",
        f"tracking.uri={db}",
        "tracking.experiment=scaling",
        f"tag=ranks{ranks}",
        f"hydra.run.dir={work}/ranks{ranks}",
        *args.overrides,
    ]
    env = {**bench_env(), "OMP_NUM_THREADS": "1"} if args.size == "tiny" else bench_env()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"{ranks}-rank leg failed (rc={proc.returncode}):\n{tail}")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(db)
    run_id = (work / f"ranks{ranks}" / "mlflow_run_id").read_text()
    history = sorted(client.get_metric_history(run_id, "train/tokens_per_s"), key=lambda m: m.step)
    return {"ranks": ranks, "tokens_per_s": [m.value for m in history]}


def summarise(legs: list[dict], warmup: int) -> list[dict]:
    """Median tokens/s after the warm-up steps and the efficiency against one rank."""
    rows = []
    for leg in legs:
        kept = leg["tokens_per_s"][warmup:] or leg["tokens_per_s"][-1:]
        rows.append({"ranks": leg["ranks"], "tokens_per_s": statistics.median(kept)})
    base = next(r["tokens_per_s"] for r in rows if r["ranks"] == 1)
    for row in rows:
        row["speedup"] = row["tokens_per_s"] / base
        row["efficiency"] = row["speedup"] / row["ranks"]
    return rows


def report(args: argparse.Namespace, legs: list[dict]) -> None:
    rows = summarise(legs, args.warmup)
    print(f"scaling ({args.size}, {args.strategy}, same per-rank batch; tokens/s over all ranks)")
    headers = ["ranks", "tokens/s", "speedup", "efficiency"]
    print_table(headers, [[r["ranks"], r["tokens_per_s"], r["speedup"], r["efficiency"]]
                          for r in rows])  # fmt: skip
    for row in rows:
        if row["ranks"] > 1:
            print_ratio(f"scaling_efficiency {row['ranks']}/1", row["efficiency"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        legs = []
        for ranks in rank_counts(args):
            print(f"{ranks} rank(s) ...", flush=True)
            legs.append(run_leg(args, ranks, Path(tmp)))
        report(args, legs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
