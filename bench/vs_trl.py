"""Our method=dpo step vs TRL's stock DPOTrainer on the same work, side by side.

Both trainers get the same model (same LoRA: r, alpha, targets from the model config), the same
tokenised pairs (our prepare_data output; TRL receives the token ids, so both see identical
sequences), the same batch size, max_length, learning rate, schedule, clipping, seed, steps and
sampling strategy (so every step of every leg sees the same batch: checked and printed), fp32 and
no gradient checkpointing on CPU, logging every step. TRL keeps its defaults otherwise; its
reference is the adapter-disabled model, as ours.

Legs, each repeat in a fresh process, in an order that rotates each repeat (trl trl_precompute
ours ours_noref, trl_precompute ours ours_noref trl, ...) so a drifting machine load does not
favour one leg:
  trl             TRL's stock DPOTrainer: a reference forward every step.
  trl_precompute  TRL at its best: precompute_ref_log_probs=True, with precompute_ref_batch_size
                  equal to ours (2 x batch pairs). Its `_precompute_ref_logps` (the reference
                  forwards plus writing the log-probs into the dataset) is timed apart; the model
                  hash TRL takes for its cache key is printed beside it, not counted (ours takes
                  none). A precompute served from TRL's cache file would time nothing: it fails.
  ours            our trainer with the reference log-probs precomputed (alignment/refcache.py, what
                  method=dpo always does), the precompute timed apart likewise.
  ours_noref      our trainer without the cache: an adapter-disabled reference forward every step.

The headline is ours against trl_precompute with each leg's precompute amortised over one epoch
("incl_precompute": step time + precompute / steps per epoch), since a run pays it once per data
(a sweep sharing the cache pays it once for all its runs; that favours ours and is not counted).
The stock-TRL ratios stay beside it. The per-step losses of every leg are printed; with --tiny
(run by tests/bench/test_bench_smoke.py) ours and trl_precompute must agree within 1e-5 at every
step, or the script fails: both read precomputed references, so a wrong one cannot pass.

Per-step wall time comes from a TrainerCallback (on_step_begin -> on_step_end) with the first
--warmup steps dropped; "loop" is the whole iteration (data loading and logging included);
tokens/s counts non-pad tokens. Peak memory: ru_maxrss of the leg's process (CPU) or
torch.cuda.max_memory_allocated (GPU).

    python bench/vs_trl.py --threads 1 --max-examples 120 --repeats 2   # smollm2_135m, CPU, ~50 min
    python bench/vs_trl.py --model llama3_2_1b --batch-size 8 --max-length 512   # on a GPU
    python bench/vs_trl.py --tiny                           # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    best_repeat,
    emit,
    measured,
    median,
    our_trainer,
    print_per_repeat,
    print_ratio,
    print_table,
    run_overrides,
    run_rotated,
    setup_leg,
    timed_reference,
    tokens_per_s,
    train_measured,
)

VARIANTS = ("trl", "trl_precompute", "ours", "ours_noref")
# Largest per-step |loss(ours) - loss(trl_precompute)| the --tiny run accepts: both compute the
# same fp32 loss from the same reference log-probs, and differ by summation order only (~1e-6).
LOSS_TOLERANCE = 1e-5


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Our DPO trainer vs TRL's DPOTrainer.")
    p.add_argument("--model", default="smollm2_135m", help="a conf/model option")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per leg")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument(
        "--sampling",
        choices=("random", "group_by_length"),
        default="random",
        help="batch sampling of both trainers (the same for both)",
    )
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--max-examples",
        type=int,
        default=0,
        help="read only the first n pairs (0: all); the precompute scales with it",
    )
    p.add_argument("--override", action="append", default=[], help="extra Hydra override")
    p.add_argument("--save", help="write every leg's raw record to this JSON file")
    p.add_argument("--tiny", action="store_true", help="model=tiny, 1 repeat, 3 steps")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    if "--tiny" in argv:  # new defaults; explicit flags still win
        # The tiny tokenizer splits finely (rows are ~170 tokens); one thread for tiny matmuls.
        p.set_defaults(model="tiny", repeats=1, steps=3, warmup=1, batch_size=2, max_length=256,
                       threads=1, max_examples=32)  # fmt: skip
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    return args


def overrides(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        f"model={args.model}",
        "method=dpo",
        *run_overrides(out, args.batch_size, args.steps),
        f"train.group_by_length={args.sampling == 'group_by_length'}",
        f"train.torch_threads={args.threads}",
        f"dataset.max_length={args.max_length}",
        f"dataset.max_examples={args.max_examples or 'null'}",
        *args.override,
    ]


# -- the legs -------------------------------------------------------------------------------------
def build_trl(cfg, device, tokenizer, data, out: Path, precompute: bool):
    """TRL's DPOTrainer with settings copied from our TrainingArguments (so they cannot drift).

    With `precompute`, TRL computes the reference log-probs of the whole train set in __init__;
    the returned extra record holds the seconds that took, and the seconds of its model hash.
    """
    import trl.trainer.dpo_trainer as dpo_module
    from peft import prepare_model_for_kbit_training
    from trl import DPOConfig, DPOTrainer

    from alignment.models import load_base, peft_lora_config
    from alignment.pipeline import training_args

    extra: dict[str, Any] = {}

    class PretokenizedDPOTrainer(DPOTrainer):
        """Stock DPOTrainer fed our token ids: only dataset preparation (untimed) is skipped."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _precompute_ref_logps(self, dataset, name, batch_size):
            start, before = time.perf_counter(), extra.get("precompute_batches", 0)
            dataset = super()._precompute_ref_logps(dataset, name, batch_size)
            extra["precompute_s"] = time.perf_counter() - start
            if extra.get("precompute_batches", 0) == before:
                raise RuntimeError("TRL served its reference log-probs from a cache file: untimed")
            return dataset

        def compute_ref_log_probs(self, model, inputs):
            extra["precompute_batches"] = extra.get("precompute_batches", 0) + 1
            return super().compute_ref_log_probs(model, inputs)

    def timed_hash(module):
        start = time.perf_counter()
        digest = hash_module(module)
        extra["model_hash_s"] = time.perf_counter() - start
        return digest

    hash_module = dpo_module.hash_module

    ours = training_args(cfg, out, device, has_val=False)
    base = load_base(cfg.model, cfg.cache_dir, device)
    if cfg.model.quantization != "none":  # as load_policy does
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=cfg.model.gradient_checkpointing
        )
    peft_config = peft_lora_config(cfg.model.lora)  # the LoRA load_policy attaches
    args = DPOConfig(
        output_dir=ours.output_dir,
        per_device_train_batch_size=ours.per_device_train_batch_size,
        gradient_accumulation_steps=ours.gradient_accumulation_steps,
        max_steps=ours.max_steps,
        learning_rate=ours.learning_rate,
        weight_decay=ours.weight_decay,
        lr_scheduler_type=ours.lr_scheduler_type,
        warmup_steps=ours.warmup_steps,
        max_grad_norm=ours.max_grad_norm,
        logging_steps=ours.logging_steps,
        save_steps=ours.save_steps,
        seed=ours.seed,
        bf16=bool(ours.bf16),  # DPOConfig would default to True
        gradient_checkpointing=cfg.model.gradient_checkpointing,  # DPOConfig: True
        use_cpu=ours.use_cpu,
        report_to="none",
        remove_unused_columns=False,  # keep `length` for the shared sampler
        train_sampling_strategy=ours.train_sampling_strategy,
        length_column_name="length",
        dataloader_num_workers=0,
        beta=cfg.method.beta,
        loss_type=["sigmoid"],
        max_length=cfg.dataset.max_length,
        precompute_ref_log_probs=precompute,
        # The batch size alignment.refcache uses (pairs), so both precomputes do the same work.
        precompute_ref_batch_size=cfg.train.batch_size * 2,
    )
    train = data.train.select_columns(["prompt_ids", "chosen_ids", "rejected_ids", "length"])
    dpo_module.hash_module = timed_hash  # TRL hashes the model only when it precomputes
    try:
        trainer = PretokenizedDPOTrainer(
            model=base,
            args=args,
            train_dataset=train,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    finally:
        dpo_module.hash_module = hash_module
    return trainer, extra


def build_ours(cfg, method, device, tokenizer, data, out: Path, ref_cache: bool):
    """Our trainer as alignment.pipeline._train builds it, with or without the reference cache."""
    from alignment.models import load_policy

    model = load_policy(cfg.model, cfg.cache_dir, device)
    extra: dict[str, Any] = {}
    if ref_cache:
        bs = cfg.train.batch_size * 2  # the batch size alignment.refcache uses
        extra["precompute_s"] = timed_reference(model, data, tokenizer.pad_token_id, bs)
    return our_trainer(cfg, method, model, tokenizer, data.train, out, device), extra


def worker(args: argparse.Namespace) -> None:
    out = Path(tempfile.mkdtemp(prefix=f"vs_trl_{args.worker}_"))
    cfg, method, device, tokenizer, data = setup_leg(overrides(args, out))
    if args.worker.startswith("trl"):
        precompute = args.worker == "trl_precompute"
        trainer, extra = build_trl(cfg, device, tokenizer, data, out, precompute)
    else:
        trainer, extra = build_ours(
            cfg, method, device, tokenizer, data, out, ref_cache=args.worker == "ours"
        )
    result = train_measured(trainer, device)
    n_train = len(data.train)
    steps_per_epoch = math.ceil(n_train / (cfg.train.batch_size * cfg.train.grad_accum))
    emit(
        {
            **result,
            **extra,
            "n_train": n_train,
            "steps_per_epoch": steps_per_epoch,
            "device": str(device),
        }
    )
    shutil.rmtree(out, ignore_errors=True)


# -- the parent -----------------------------------------------------------------------------------
def summarise(runs: list[dict], warmup: int) -> dict[str, float]:
    mem_key = "peak_gpu_mb" if "peak_gpu_mb" in runs[0] else "peak_rss_mb"
    return {
        "step": median([s for r in runs for s in measured(r["steps"], warmup)]),
        "best": best_repeat(runs, warmup),
        "loop": median([s for r in runs for s in measured(r["loops"], warmup)]),
        "tps": median([tokens_per_s(r["tokens"], r["steps"], warmup) for r in runs]),
        "mem": median([r[mem_key] for r in runs]),
        "loss": runs[0]["losses"][-1] if runs[0]["losses"] else float("nan"),
    }


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    stats = {v: summarise(runs, args.warmup) for v, runs in results.items()}
    first = next(iter(results.values()))[0]
    mem_name = "peak_gpu_MB" if "peak_gpu_mb" in first else "peak_rss_MB"
    print(
        f"\nmodel={args.model} device={first['device']} batch={args.batch_size} pairs "
        f"max_length={args.max_length} steps={args.steps} (warm-up {args.warmup} dropped) "
        f"repeats={args.repeats} sampling={args.sampling}"
    )
    rows = [[v, s["step"], s["best"], s["loop"], s["tps"], s["mem"], s["loss"]]
            for v, s in stats.items()]  # fmt: skip
    print_table(["leg", "step_s", "best_s", "loop_s", "tokens/s", mem_name, "last_loss"], rows)
    same = all(runs[0]["rows"] == first["rows"] for runs in results.values())
    print(f"same batches in every leg: {'yes' if same else 'NO'}")
    print("median step time per repeat (#: place in that repeat's run order):")
    print_per_repeat(results, args.warmup)
    _print_losses(results)
    _print_precompute(stats, results)
    _print_ratios(stats)
    if args.tiny:
        check_losses_agree(results)


def _print_losses(results: dict[str, list[dict]]) -> None:
    """Every leg's loss at every step (first repeat), and the largest gap to each TRL leg."""
    print("loss per step (first repeat):")
    legs = list(results)
    steps = max(len(runs[0]["losses"]) for runs in results.values())
    table = [[k, *(_at(results[v][0]["losses"], k) for v in legs)] for k in range(steps)]
    print_table(["step", *legs], [[r[0], *(f"{x:.7f}" for x in r[1:])] for r in table])
    for ref in ("trl", "trl_precompute"):
        for v in ("ours", "ours_noref"):
            if ref in results and v in results:
                print(f"max |loss({v}) - loss({ref})| over steps: {_loss_gap(results, v, ref):.2e}")


def _at(values: list[float], k: int) -> float:
    return values[k] if k < len(values) else float("nan")


def _loss_gap(results: dict[str, list[dict]], a: str, b: str) -> float:
    """Largest per-step loss gap; NaN (never passes a check) when the step counts differ."""
    la, lb = results[a][0]["losses"], results[b][0]["losses"]
    if len(la) != len(lb) or not la:
        return float("nan")
    return max(abs(x - y) for x, y in zip(la, lb, strict=True))


def check_losses_agree(results: dict[str, list[dict]]) -> None:
    """Fail unless ours and TRL-with-precompute log the same loss at every step (--tiny)."""
    if not {"ours", "trl_precompute"} <= set(results):
        raise SystemExit("--tiny checks the losses of legs ours and trl_precompute: run both")
    gap = _loss_gap(results, "ours", "trl_precompute")
    if not gap <= LOSS_TOLERANCE:  # NaN fails too
        raise SystemExit(
            f"losses of ours and trl_precompute differ: max gap {gap:.3g} > {LOSS_TOLERANCE:g}"
        )
    print(f"losses agree (ours vs trl_precompute, every step): {gap:.2e} <= {LOSS_TOLERANCE:g}")


def _print_precompute(stats: dict[str, dict], results: dict[str, list[dict]]) -> None:
    """Each precomputing leg's reference pass, amortised over one epoch: `<leg>_incl_precompute`."""
    for leg, label in (("ours", "ours"), ("trl_precompute", "TRL")):
        if leg not in results:
            continue
        runs = results[leg]
        pre = median([r["precompute_s"] for r in runs])
        n_train, epoch = runs[0]["n_train"], runs[0]["steps_per_epoch"]
        per_step = pre / epoch
        note = ""
        if "model_hash_s" in runs[0]:
            note = f" (+ {median([r['model_hash_s'] for r in runs]):.3g} s model hash, not counted)"
        print(
            f"reference precompute ({label}): {pre:.3g} s for {n_train} pairs = {per_step:.3g} "
            f"s/step amortised over one epoch ({epoch} steps){note}"
        )
        stats[f"{leg}_incl_precompute"] = {
            **stats[leg],
            "step": stats[leg]["step"] + per_step,
            "best": stats[leg]["best"] + per_step,
        }


def _print_ratios(stats: dict[str, dict]) -> None:
    if "ours_incl_precompute" in stats and "trl_precompute_incl_precompute" in stats:
        ours, trl = stats["ours_incl_precompute"], stats["trl_precompute_incl_precompute"]
        print(
            "headline: ours-with-cache vs TRL-with-precompute, step time with each precompute "
            "amortised over one epoch (target <= 0.8):"
        )
        print_ratio("step_time ours_incl_precompute/trl_precompute_incl_precompute",
                    ours["step"] / trl["step"])  # fmt: skip
        print_ratio("step_time_best_repeat ours_incl_precompute/trl_precompute_incl_precompute",
                    ours["best"] / trl["best"])  # fmt: skip
    for base in ("trl_precompute", "trl"):
        if base not in stats:
            continue
        print(f"against {base}:")
        b = stats[base]
        others = ("ours", "ours_noref")
        if base == "trl":  # stock TRL has no precompute: every precomputing leg, both ways
            others += ("ours_incl_precompute", "trl_precompute", "trl_precompute_incl_precompute")
        for v in others:
            if v in stats:
                print_ratio(f"step_time {v}/{base}", stats[v]["step"] / b["step"])
                print_ratio(f"step_time_best_repeat {v}/{base}", stats[v]["best"] / b["best"])
        for v in ("ours", "ours_noref"):
            if v in stats:
                print_ratio(f"tokens_per_s {v}/{base}", stats[v]["tps"] / b["tps"])
                print_ratio(f"peak_mem {v}/{base}", stats[v]["mem"] / b["mem"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    legs = args.variants.split(",")
    report(args, run_rotated(Path(__file__), argv, legs, args.repeats, args.save))
    return 0


if __name__ == "__main__":
    sys.exit(main())
