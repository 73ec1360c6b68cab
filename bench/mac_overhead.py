"""MAC overhead: step time and peak memory of method=mac against method=sft with LoRA, on the
same model and the same data.

Same data: MAC draws one batch of b rows from each of its three axis datasets per step; the SFT
leg trains LoRA on the union of the same three offline datasets (dataset=hhh_builtin) with
batches of 3b rows, so both legs put 3b rows of the same kind through the model per step. Both
legs run through the pipeline's own data preparation and Trainer (build_trainer), each in a
fresh process, the order rotating each repeat. Tokens per second is printed beside the step time
because the rows of a step differ between the legs.

The circuit's own cost at a given hidden size H is printed analytically (it does not depend on
the machine): 3(H^2 + H) + 3dH + 3dH parameters, fp32 weights + gradients + AdamW moments =
16 bytes per parameter, and the (B, S, 3, H) axis tensor it keeps for the backward pass.

    python bench/mac_overhead.py                      # smollm2_135m on CPU (layer 15 of 30)
    python bench/mac_overhead.py --model llama3_8b --batch-size 2    # on a GPU (4-bit base)
    python bench/mac_overhead.py --tiny               # seconds; run by the test suite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import (
    best_repeat,
    emit,
    median,
    print_per_repeat,
    print_ratio,
    print_table,
    run_overrides,
    run_rotated,
    tokens_per_s,
    train_measured,
)

LEGS = ("sft", "mac")
H_REFERENCE, HEAD_DIM = 4096, 64


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MAC vs LoRA SFT: step time and peak memory.")
    p.add_argument("--model", default="smollm2_135m", help="a conf/model option")
    p.add_argument("--layer", type=int, default=15, help="MAC's decoder layer")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    p.add_argument("--batch-size", type=int, default=2, help="rows per axis per step (b)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override")
    p.add_argument("--save", help="write every leg's raw record to this JSON file")
    p.add_argument("--tiny", action="store_true", help="model=tiny, 1 repeat, 3 steps")
    p.add_argument("--worker", choices=LEGS, help=argparse.SUPPRESS)
    if "--tiny" in argv:
        p.set_defaults(model="tiny", layer=1, repeats=1, steps=3, warmup=1, threads=1)
    return p.parse_args(argv)


def overrides(args: argparse.Namespace, leg: str, out: Path) -> list[str]:
    b = args.batch_size
    common = [f"model={args.model}", "optimizer=adamw", f"train.torch_threads={args.threads}"]
    common += ["train.samples=0", "dataset.val_fraction=0"]
    if leg == "mac":
        leg_args = ["method=mac", f"method.layers=[{args.layer}]", "method.heatmap=false"]
        return [*common, *leg_args, *run_overrides(out, b, args.steps), *args.override]
    leg_args = ["method=sft", "dataset=hhh_builtin"]
    return [*common, *leg_args, *run_overrides(out, 3 * b, args.steps), *args.override]


def worker(args: argparse.Namespace) -> None:
    """One leg: the pipeline's data preparation and Trainer, timed step by step."""
    from common import setup_run

    from alignment.data.prepare import prepare_data
    from alignment.models import load_tokenizer
    from alignment.pipeline import build_trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg, method, device = setup_run(overrides(args, args.worker, Path(tmp)))
        tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
        data = (method.prepare_data or prepare_data)(cfg, method, tokenizer)
        data.val = None
        trainer = build_trainer(cfg, method, device, tokenizer, data, Path(tmp))
        model = trainer.model
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        record = train_measured(trainer, device)
    record.update(
        leg=args.worker,
        device=str(device),
        trainable=trainable,
        hidden=model.config.hidden_size,
        layers=model.config.num_hidden_layers,
    )
    emit(record)


def circuit_memory(hidden: int, head_dim: int = HEAD_DIM) -> dict[str, float]:
    """MAC's training-state memory in MiB and its activation bytes per token (fp32)."""
    params = 3 * (hidden * hidden + hidden) + 3 * head_dim * hidden + 3 * head_dim * hidden
    return {
        "params": params,
        "weights_mib": 4 * params / 2**20,
        "train_state_mib": 16 * params / 2**20,  # weights + grads + 2 AdamW moments, fp32
        # kept for backward, fp32: M (3H), q/k/v (3 x 3d), weights (9), mixed (3d), steer (H)
        "act_bytes_per_token": 4 * (4 * hidden + 12 * head_dim + 9),
    }


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    rows, summary = [], {}
    for leg, runs in results.items():
        step = best_repeat(runs, args.warmup)
        tps = median([tokens_per_s(r["tokens"], r["steps"], args.warmup) for r in runs])
        mem = median([r.get("peak_gpu_mb", r["peak_rss_mb"]) for r in runs])
        summary[leg] = {"step": step, "tps": tps, "mem": mem}
        rows.append([leg, runs[0]["trainable"], step, tps, mem, runs[0]["device"]])
    print_table(["leg", "trainable", "step s (best)", "tokens/s", "peak MiB", "device"], rows)
    print_per_repeat(results, args.warmup)
    print_ratio("step_time mac/sft", summary["mac"]["step"] / summary["sft"]["step"])
    print_ratio("tokens_per_s mac/sft", summary["mac"]["tps"] / summary["sft"]["tps"])
    print_ratio("peak_mem mac/sft", summary["mac"]["mem"] / summary["sft"]["mem"])
    hidden = results["mac"][0]["hidden"]
    for h in sorted({hidden, H_REFERENCE}):
        c = circuit_memory(h)
        print(
            f"MAC circuit at H={h}: {c['params'] / 1e6:.1f} M parameters, fp32 weights "
            f"{c['weights_mib']:.0f} MiB, training state (weights, grads, AdamW) "
            f"{c['train_state_mib']:.0f} MiB, activations {c['act_bytes_per_token'] / 1024:.0f} "
            "KiB per token"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    passed = [a for a in argv if a != "--worker"]
    results = run_rotated(Path(__file__), passed, LEGS, args.repeats, args.save)
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
