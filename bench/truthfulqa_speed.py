"""TruthfulQA MC1/MC2 speed: the shared-prefix scorer against scoring every request in full.

Both paths run in one process, on the same model, questions, batch size and thread count:
"full" (`share_prefix=false`: every (context, choice) request runs through the model, MC1 and
MC2 separately, as lm-evaluation-harness does) and "shared" (the default: the six-shot preamble
runs once and its key/value cache is reused, duplicate requests are scored once, and the short
remainders are batched across questions). A two-question warm-up of each path comes first and
is not timed. It prints the wall time per 100 questions of each, their ratio, MC1/MC2 of both
(which must agree: MC1 exactly, MC2 to float rounding) and, for scale, lm-evaluation-harness's
figure from issue 12: about 34 minutes for all 817 questions on a loaded 2-core machine, i.e.
~250 s per 100 questions (quoted, not measured here; the target is to be at or below it).

    python bench/truthfulqa_speed.py                        # smollm2_135m, 50 questions, 1 thread
    python bench/truthfulqa_speed.py --questions 100 --threads 2
    python bench/truthfulqa_speed.py --tiny                 # model=tiny smoke run (a test runs it)
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import compose_run, print_ratio, print_table

LM_EVAL_S_PER_100 = 34 * 60 / 817 * 100  # issue 12's lm-evaluation-harness figure (~250 s)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--questions", type=int, default=50, help="the first n questions")
    p.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    p.add_argument("--batch-size", type=int, default=8, help="requests per forward pass")
    p.add_argument("--data", default="builtin", help="builtin | a local TruthfulQA file")
    p.add_argument("--tiny", action="store_true", help="model=tiny, 6 questions")
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.questions = "tiny", min(args.questions, 6)
    return args


def timed(model, tokenizer, items, batch_size: int, share_prefix: bool) -> tuple[float, dict]:
    from alignment.evaluation.truthfulqa import score_truthfulqa

    start = time.perf_counter()
    scores = score_truthfulqa(
        model, tokenizer, items, batch_size=batch_size, share_prefix=share_prefix
    )
    return time.perf_counter() - start, scores


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from alignment.evaluation.suites import truthfulqa_items
    from alignment.models import load_base, load_tokenizer, pick_device

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        cfg = compose_run([f"model={args.model}", f"output_dir={out}"])
    device = pick_device(cfg.train.device)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    model = load_base(cfg.model, cfg.cache_dir, device).eval()
    items = truthfulqa_items(args.data)[: args.questions]
    for share in (False, True):  # warm-up: allocator, kernels, tokenizer caches
        timed(model, tokenizer, items[:2], args.batch_size, share)
    seconds, scores = {}, {}
    for name, share in (("full", False), ("shared", True)):
        seconds[name], scores[name] = timed(model, tokenizer, items, args.batch_size, share)
    report(args, len(items), str(device), seconds, scores)


def report(args, n: int, device: str, seconds: dict, scores: dict) -> None:
    per_100 = {k: v / n * 100 for k, v in seconds.items()}
    setup = f"{args.threads} thread(s), {device}, batch {args.batch_size}"
    print(f"TruthfulQA MC, {args.model}, {n} questions, {setup}")
    rows = []
    for name in ("full", "shared"):
        mc = scores[name]
        rows.append(
            [name, seconds[name], per_100[name], per_100[name] * 8.17, mc["mc1"], mc["mc2"]]
        )
    print_table(["path", "wall_s", "s_per_100q", "est_s_817q", "mc1", "mc2"], rows)
    print(f"lm-evaluation-harness (issue 12, not measured here): {LM_EVAL_S_PER_100:.0f} s/100q")
    print_ratio("time shared/full", per_100["shared"] / per_100["full"])
    print_ratio("time shared/lm_eval_reference", per_100["shared"] / LM_EVAL_S_PER_100)
    # MC1 must be equal and MC2 equal to float rounding (tests/bench parses these lines).
    print(f"delta mc1 = {scores['shared']['mc1'] - scores['full']['mc1']:.3e}")
    print(f"delta mc2 = {scores['shared']['mc2'] - scores['full']['mc2']:.3e}")


if __name__ == "__main__":
    main()
