"""Our trainer's step vs a bare PyTorch loop doing the same maths on the same batches.

The bare loop is the floor: collate, forward of the concatenated chosen+rejected batch
(alignment.forward.forward_logps, completion-only logits as configured), the reference log-probs
(read from the batch when the reference cache is on, as our trainer does; else an
adapter-disabled forward), dpo_loss, backward, gradient clipping (when optimizer.max_grad_norm
> 0), the AdamW step from our build_optimizer, the learning-rate schedule and zero_grad. Nothing
else: no logging, no metrics, no callbacks, no host sync (losses are read after the loop).

Both legs see the same pairs in the same order: a seeded permutation of the training split, cut
into consecutive batches; the trainer leg reads it with sequential sampling. Same seed, same LoRA
init, same optimizer and schedule, so their losses match step for step (printed as a check).
Each leg runs in a fresh process; legs alternate, the order rotating each repeat (trainer bare,
bare trainer, ...).

Timings: "step" is the compute window (trainer: on_step_begin -> on_step_end; bare: after the
batch is on the device -> after zero_grad), "loop" the whole iteration (data, logging included).

    python bench/overhead.py                       # smollm2_135m on CPU
    python bench/overhead.py --model llama3_2_1b   # on a GPU
    python bench/overhead.py --tiny                # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import (
    best_repeat,
    emit,
    measured,
    median,
    our_trainer,
    peak_memory_mb,
    print_per_repeat,
    print_ratio,
    print_table,
    run_overrides,
    run_rotated,
    setup_leg,
    train_measured,
)

if TYPE_CHECKING:  # the parent process never imports torch: only the legs pay for it
    import torch

LEGS = ("trainer", "bare")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Our trainer's step vs a bare training loop.")
    p.add_argument("--model", default="smollm2_135m", help="a conf/model option")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--no-ref-cache", action="store_true", help="reference forward every step")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override")
    p.add_argument("--save", help="write every leg's raw record to this JSON file")
    p.add_argument("--tiny", action="store_true", help="model=tiny, 1 repeat, 3 steps")
    p.add_argument("--worker", choices=LEGS, help=argparse.SUPPRESS)
    if "--tiny" in argv:  # new defaults; explicit flags still win
        # The tiny tokenizer splits finely (rows are ~170 tokens); one thread for tiny matmuls.
        p.set_defaults(model="tiny", repeats=1, steps=3, warmup=1, batch_size=2, max_length=256,
                       threads=1)  # fmt: skip
    return p.parse_args(argv)


def overrides(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        f"model={args.model}",
        "method=dpo",
        "optimizer=adamw",
        *run_overrides(out, args.batch_size, args.steps),
        f"train.torch_threads={args.threads}",
        f"dataset.max_length={args.max_length}",
        *args.override,
    ]


def fixed_order(data, n_rows: int, seed: int) -> None:
    """Replace data.train with a seeded permutation of it, repeated to n_rows rows."""
    import torch

    n = len(data.train)
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-n_rows // n))])
    data.train = data.train.select(order[:n_rows].tolist())


# -- the bare loop --------------------------------------------------------------------------------
def _to_device(batch: dict, device: torch.device) -> dict:
    import torch

    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _bare_loss(model, batch: dict, cfg) -> torch.Tensor:
    import torch

    from alignment.forward import forward_logps
    from alignment.losses import dpo_loss

    b = batch["index"].shape[0]
    completion_only = cfg.train.completion_only_logits
    logps, _, _ = forward_logps(model, batch, completion_only)  # (2B,): chosen rows first
    if "ref_chosen_logps" in batch:
        ref_c, ref_r = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    else:
        with torch.no_grad(), model.disable_adapter():
            ref, _, _ = forward_logps(model, batch, completion_only)
        ref_c, ref_r = ref[:b], ref[b:]
    m = cfg.method
    return dpo_loss(
        logps[:b], logps[b:], ref_c, ref_r, beta=m.beta, label_smoothing=m.label_smoothing
    ).loss


def bare_loop(cfg, model, tokenizer, train, device: torch.device, out: Path) -> dict:
    import torch
    from transformers import get_scheduler

    from alignment.data.collate import Collator
    from alignment.optim import build_optimizer
    from alignment.pipeline import training_args

    args = training_args(cfg, out, device, has_val=False)  # the schedule and bf16 the trainer gets
    optimizer, preconditioner = build_optimizer(cfg.optimizer, model)
    assert preconditioner is None, "the bare loop is plain AdamW"
    steps, b, clip = cfg.train.max_steps, cfg.train.batch_size, args.max_grad_norm
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, args.get_warmup_steps(steps), steps
    )
    params = [p for p in model.parameters() if p.requires_grad]
    collate = Collator(tokenizer.pad_token_id, pairs=True)
    times: dict[str, list[float]] = {"steps": [], "loops": []}
    tokens, rows, losses = [], [], []
    model.train()
    for step in range(steps):
        start = time.perf_counter()
        batch = _to_device(collate([train[i] for i in range(step * b, (step + 1) * b)]), device)
        ready = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(args.bf16)):
            loss = _bare_loss(model, batch, cfg)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        end = time.perf_counter()
        times["steps"].append(end - ready)
        times["loops"].append(end - start)
        losses.append(loss.detach())
        lengths = batch["attention_mask"].sum(dim=1)
        tokens.append(int(lengths.sum()))
        rows.append([int(n) for n in lengths])
    return {**times, "tokens": tokens, "rows": rows, "losses": [float(x) for x in losses]}


# -- the legs -------------------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    import torch

    from alignment.models import load_policy

    out = Path(tempfile.mkdtemp(prefix=f"overhead_{args.worker}_"))
    cfg, method, device, tokenizer, data = setup_leg(overrides(args, out))
    fixed_order(data, cfg.train.max_steps * cfg.train.batch_size, cfg.seed)
    model = load_policy(cfg.model, cfg.cache_dir, device)
    if not args.no_ref_cache:  # only the rows used: both legs read the same values
        from alignment.refcache import compute_reference

        refs = compute_reference(model, data.train, tokenizer.pad_token_id, cfg.train.batch_size)
        data.attach_reference({"train": refs})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.worker == "trainer":
        trainer = our_trainer(
            cfg,
            method,
            model,
            tokenizer,
            data.train,
            out,
            device,
            train_sampling_strategy="sequential",
        )
        result = train_measured(trainer, device)
    else:
        result = bare_loop(cfg, model, tokenizer, data.train, device, out)
        result.update(peak_memory_mb(device))
    emit({**result, "device": str(device)})
    shutil.rmtree(out, ignore_errors=True)


# -- the parent -----------------------------------------------------------------------------------
def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    w = args.warmup
    stats = {
        leg: {
            "step": median([s for r in runs for s in measured(r["steps"], w)]),
            "best": best_repeat(runs, w),
            "loop": median([s for r in runs for s in measured(r["loops"], w)]),
            "loss": runs[0]["losses"][-1],
        }
        for leg, runs in results.items()
    }
    first = results["trainer"][0]
    print(
        f"\nmodel={args.model} device={first['device']} batch={args.batch_size} pairs "
        f"max_length={args.max_length} steps={args.steps} (warm-up {w} dropped) "
        f"repeats={args.repeats} ref_cache={not args.no_ref_cache}"
    )
    print_table(
        ["leg", "step_s", "best_s", "loop_s", "last_loss"],
        [[leg, s["step"], s["best"], s["loop"], s["loss"]] for leg, s in stats.items()],
    )
    bare = results["bare"][0]
    same = first["rows"] == bare["rows"]
    gap = max(abs(a - b) for a, b in zip(first["losses"], bare["losses"], strict=False))
    print(f"same batches: {'yes' if same else 'NO'}; max |loss(trainer) - loss(bare)|: {gap:.2e}")
    print("median step time per repeat (#: place in that repeat's run order):")
    print_per_repeat(results, w)
    print_ratio("step trainer/bare", stats["trainer"]["step"] / stats["bare"]["step"])
    print_ratio("loop trainer/bare", stats["trainer"]["loop"] / stats["bare"]["loop"])
    print_ratio("step_best_repeat trainer/bare", stats["trainer"]["best"] / stats["bare"]["best"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    results = run_rotated(Path(__file__), argv, LEGS, args.repeats, args.save)
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
