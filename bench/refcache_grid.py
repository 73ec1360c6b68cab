"""Shared reference cache on a grid: reference passes and wall time with and without it.

Runs the four reference-using cells of the method grid on one model and one dataset,

    dpo               method=dpo
    cita_stacked      method=cita method.reference_free=false
    factual_dpo_d2    method=factual_dpo method.delta=2
    factual_dpo_d10   method=factual_dpo method.delta=10

twice, with train.reference=cached: "shared" runs all four against one cache dir, so the first
computes the reference log-probs and the other three load them; "fresh" gives each run an empty
reference cache, so each computes its own (the model weights and tokenised data are shared in
both modes, so only the reference pass differs). It prints, per run and per mode, the reference
passes over the data (cache misses), the reference forward batches (cached passes plus online
reference forwards in the trainer) and the wall time of `run_training`, then the fresh/shared
ratios. Goal: one reference pass over the data for the whole set instead of four.

The data is a generated flagged jsonl (prompt, chosen, rejected, h_w, h_l) in the form AIXpert
trains on (`train_final_flipped.jsonl`: buckets (0,1), (0,0), (1,1)), so every cell tokenises to
the same rows. `--unflipped` adds (1,0) pairs: Factual-DPO then swaps them before training, its
rows differ from DPO's, and the set needs two passes (one for DPO/CITA, one for every Delta).

    python bench/refcache_grid.py --tiny                 # model=tiny smoke run (a test runs it)
    python bench/refcache_grid.py                        # smollm2_135m, 2 steps per cell
    python bench/refcache_grid.py --rows 96 -- train.batch_size=4
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CELLS: dict[str, list[str]] = {
    "dpo": ["method=dpo"],
    "cita_stacked": ["method=cita", "method.reference_free=false"],
    "factual_dpo_d2": ["method=factual_dpo", "method.delta=2"],
    "factual_dpo_d10": ["method=factual_dpo", "method.delta=10"],
}
MODES = ("shared", "fresh")

# (question, correct answer, wrong answer): the generated pairs are built from these.
_FACTS = [
    ("At what temperature does water boil at sea level?", "At 100 degrees C.", "At 90 degrees C."),
    ("What is the capital of France?", "Paris is its capital.", "Lyon is its capital."),
    ("How many legs does a spider have?", "A spider has eight legs.", "A spider has six legs."),
    ("Which planet is closest to the Sun?", "Mercury is the closest.", "Venus is the closest."),
    ("What gas do plants absorb from the air?", "Carbon dioxide.", "Nitrogen only."),
    ("Who wrote Hamlet?", "William Shakespeare wrote it.", "Charles Dickens wrote it."),
]
# (h_w, h_l) cycle: AIXpert's flipped training file has no (1, 0) pairs.
_FLIPPED_BUCKETS = [(0, 1), (0, 0), (1, 1), (0, 1)]
_ALL_BUCKETS = [(0, 1), (1, 0), (0, 0), (1, 1)]


def write_flagged_pairs(
    path: Path, rows: int, unflipped: bool = False, instruction: str | None = None
) -> Path:
    """A jsonl of `rows` preference pairs with hallucination flags h_w/h_l (1 = non-factual).

    A (0, 1) pair prefers the correct answer over a wrong one; (1, 0) prefers the wrong one;
    (0, 0) and (1, 1) pair answers of equal factuality. Rows are short enough for max_length 128
    with any of the project's tokenizers. `instruction` adds CITA's instruction column.
    """
    buckets = _ALL_BUCKETS if unflipped else _FLIPPED_BUCKETS
    lines = []
    for i in range(rows):
        question, right, wrong = _FACTS[i % len(_FACTS)]
        h_w, h_l = buckets[i % len(buckets)]
        answer = {0: right, 1: wrong}
        chosen, rejected = answer[h_w], answer[h_l]
        if h_w == h_l:  # same factuality: the preferred one is the more helpful phrasing
            chosen, rejected = f"{chosen} Happy to help.", chosen
        prompt = f"Question {i}: {question}"
        row = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "h_w": h_w, "h_l": h_l}
        lines.append(json.dumps(row | ({"instruction": instruction} if instruction else {})))
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="model=tiny, 16 rows (smoke mode)")
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--rows", type=int, default=48, help="generated preference pairs")
    parser.add_argument("--steps", type=int, default=2, help="train.max_steps per run")
    parser.add_argument("--unflipped", action="store_true", help="add (1,0) pairs to the data")
    parser.add_argument("--workdir", type=Path, help="keep outputs here (default: a temp dir)")
    parser.add_argument("--weights-cache", type=Path,
                        help="a cache_dir whose models/ and tokenized/ every run reuses "
                        "(default: one in the work dir); its refcache/ is never used")  # fmt: skip
    parser.add_argument("--tracking-uri", help="MLflow store (default: sqlite in the work dir)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, after --")
    args = parser.parse_args(argv)
    if args.tiny:  # one torch thread: a tiny model's matmuls only lose to thread hand-offs
        args.model, args.rows = "tiny", 16
        args.overrides = ["train.torch_threads=1", *args.overrides]
    return args


def compose_run(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=overrides))


def overrides(args: argparse.Namespace, cell: str, work: Path, out: Path, cache: Path) -> list[str]:
    """The Hydra overrides of one cell's run; the command line's extra overrides come last."""
    return [
        f"model={args.model}", "dataset=local", f"dataset.path={work / 'pairs.jsonl'}",
        "dataset.max_length=128", f"train.max_steps={args.steps}", "train.batch_size=2",
        "train.samples=0", "train.save_steps=1000", "train.reference=cached",
        "tracking.experiment=refcache_grid",
        f"output_dir={out}", f"cache_dir={cache}", *CELLS[cell], *args.overrides,
    ]  # fmt: skip


def fresh_cache(root: Path, weights: Path) -> Path:
    """A cache dir with an empty reference cache, whose model weights and tokenised data are
    links to those under `weights`."""
    root.mkdir(parents=True)
    for sub in ("models", "tokenized"):
        (weights / sub).mkdir(parents=True, exist_ok=True)
        os.symlink((weights / sub).resolve(), root / sub)
    return root


def run_cell(args: argparse.Namespace, cell: str, mode: str, work: Path, cache: Path) -> dict:
    """One training run; its reference passes and batches and its wall time."""
    from mlflow.tracking import MlflowClient

    from alignment.pipeline import run_training
    from alignment.refcache import REFERENCE_BATCHES

    out, db = work / "runs" / f"{mode}_{cell}", args.tracking_uri
    cfg = compose_run(overrides(args, cell, work, out, cache) + [
        f"tracking.uri={db}", f"tracking.run_name={mode}-{cell}",
        f"+tracking.tags.bench_mode={mode}",
    ])  # fmt: skip
    before = dict(REFERENCE_BATCHES)
    start = time.perf_counter()
    run_training(cfg)
    wall = time.perf_counter() - start
    client = MlflowClient(db)
    run_id = (out / "mlflow_run_id").read_text().strip()
    online = client.get_metric_history(run_id, "train/reference_forwards")
    cached = REFERENCE_BATCHES["computed"] - before["computed"]
    return {
        "cell": cell,
        "mode": mode,
        "passes": REFERENCE_BATCHES["misses"] - before["misses"],
        "hits": REFERENCE_BATCHES["hits"] - before["hits"],
        "batches": cached + int(max((m.value for m in online), default=0)),
        "wall_s": wall,
    }


def warm_up(args: argparse.Namespace, work: Path, weights: Path) -> None:
    """Materialise the model weights, tokenise each cell's data and create the MLflow store once,
    untimed, so that neither mode pays for them."""
    from mlflow.tracking import MlflowClient

    from alignment.data.prepare import prepare_data
    from alignment.methods import get_method
    from alignment.models import load_policy, load_tokenizer, pick_device

    for i, cell in enumerate(CELLS):
        cfg = compose_run(overrides(args, cell, work, work / "warmup", weights))
        tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
        prepare_data(cfg, get_method(cfg.method), tokenizer)
        if i == 0:
            load_policy(cfg.model, cfg.cache_dir, pick_device(cfg.train.device))
    MlflowClient(args.tracking_uri).search_experiments()


def print_table(rows: list[dict], keys: list[str]) -> None:
    cells = [[f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def main(argv: list[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="refcache_grid_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if any(work.iterdir()):  # finished runs in it would be skipped, not re-timed
            raise SystemExit(f"--workdir {work} must be empty or new")
        args.tracking_uri = args.tracking_uri or f"sqlite:///{work}/mlflow.db"
        write_flagged_pairs(work / "pairs.jsonl", args.rows, args.unflipped)
        weights = args.weights_cache or work / "weights"
        warm_up(args, work, weights)
        shared = fresh_cache(work / "cache_shared", weights)
        results = []
        # The Trainer ends every run with gc.collect(); frozen, the objects of the imports made
        # so far are not rescanned each time (about a second per run inside a test process).
        gc.freeze()
        try:
            for mode in MODES:
                for cell in CELLS:
                    fresh = work / f"cache_fresh_{cell}"
                    cache = shared if mode == "shared" else fresh_cache(fresh, weights)
                    results.append(run_cell(args, cell, mode, work, cache))
        finally:
            gc.unfreeze()
    print(f"\nrefcache grid: model={args.model} rows={args.rows} steps={args.steps}"
          f"{' (with unflipped (1,0) pairs)' if args.unflipped else ''}")  # fmt: skip
    print_table(results, ["cell", "mode", "passes", "hits", "batches", "wall_s"])
    totals = {m: {k: sum(r[k] for r in results if r["mode"] == m)
                  for k in ("passes", "batches", "wall_s")} for m in MODES}  # fmt: skip
    print()
    print_table([{"mode": m, **t} for m, t in totals.items()], ["mode", *totals["shared"]])
    shared_t, fresh_t = totals["shared"], totals["fresh"]
    batches = fresh_t["batches"] / max(shared_t["batches"], 1)
    print(f"ratio reference_batches fresh/shared = {batches:.3f}")
    print(f"ratio wall_time fresh/shared = {fresh_t['wall_s'] / max(shared_t['wall_s'], 1e-9):.3f}")
    print(f"goal: 1 reference pass for the {len(CELLS)} cells; shared used {shared_t['passes']}, "
          f"fresh used {fresh_t['passes']}")  # fmt: skip
    return {"runs": results, "totals": totals}


if __name__ == "__main__":
    main()
