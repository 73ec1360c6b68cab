"""DPO on HH-RLHF harmless pairs, scored on held-out pairs it never trained on, base vs trained.

    python experiments/hh_heldout.py                      # SmolLM2-135M, the settings below
    python experiments/hh_heldout.py --model tiny --train-rows 16 --heldout-rows 8 --steps 2

Data: ../shared/data/hh-rlhf-harmless-base-test.jsonl.gz (the first 2,000 rows of Anthropic/
hh-rlhf harmless-base test; --data for another copy). The first --train-rows rows (1,800) are the
training set, the last --heldout-rows rows (200) the held-out set: disjoint, and the held-out
rows are never trained or tuned on. Training is `train.py` itself (method=dpo, dataset=hh_rlhf
on the written train.jsonl, no validation split), so the run, its reference cache and its MLflow
run are the same as any other; this script then scores the held-out pairs with the adapters off
(base) and on (trained) and logs into that run:

- likelihood preference accuracy: share of pairs with log pi(chosen) > log pi(rejected)
  (summed response log-probs), for base and trained;
- implicit-reward accuracy: share of pairs with r(chosen) > r(rejected), r = beta * (log pi -
  log pi_base). For the base model every margin is exactly 0 (pi = pi_ref), so its value is the
  chance level 0.5 by definition (ties count half); the trained value is compared with that;
- each with a percentile bootstrap 95% interval over pairs (paired for the differences).

Pairs longer than --eval-max-length tokens are dropped from scoring and counted (heldout/dropped);
rows with malformed dialogues are skipped by the loader and counted too.
Output: <out>/run (the train.py run), <out>/heldout_scores.jsonl, <out>/heldout.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this checkout's package

from alignment.config import DatasetConfig, ModelConfig  # noqa: E402
from alignment.data.collate import Collator  # noqa: E402
from alignment.data.formatting import encode_examples  # noqa: E402
from alignment.data.readers import load_records  # noqa: E402
from alignment.data.sources import load_hh_rlhf  # noqa: E402
from alignment.forward import forward_logps  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--model", default="smollm2_135m", help="a conf/model option")
    p.add_argument("--train-rows", type=int, default=1800)
    p.add_argument("--heldout-rows", type=int, default=200)
    p.add_argument("--max-length", type=int, default=160, help="training pairs (longer dropped)")
    p.add_argument("--eval-max-length", type=int, default=1024)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", default="hh_heldout")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "experiments" / "hh_heldout")
    p.add_argument(
        "--cache-dir", default=os.environ.get("ALIGNMENT_CACHE", "~/.cache/alignment-lab")
    )
    return p.parse_args(argv)


def split_rows(args: argparse.Namespace) -> tuple[Path, Path]:
    """Write the first train-rows rows and the last heldout-rows rows as two .jsonl files."""
    if not args.data.is_file():
        raise SystemExit(
            f"error: {args.data} not found. It is the first 2,000 rows of Anthropic/hh-rlhf "
            "harmless-base/test.jsonl.gz (chosen/rejected dialogues); pass --data <file>."
        )
    _, records = load_records(str(args.data))
    n, total = args.train_rows, args.train_rows + args.heldout_rows
    if total > len(records):
        raise SystemExit(f"error: {args.data} has {len(records)} rows; asked for {n} + held out")
    args.out.mkdir(parents=True, exist_ok=True)
    paths = args.out / "train.jsonl", args.out / "heldout.jsonl"
    for path, rows in zip(paths, (records[:n], records[-args.heldout_rows :]), strict=True):
        path.write_text("".join(json.dumps(row) + "\n" for _, row in rows), encoding="utf-8")
    return paths


def train(args: argparse.Namespace, train_file: Path) -> Path:
    """Run train.py on the training rows; returns its run directory."""
    run_dir = args.out / "run"
    overrides = [
        f"model={args.model}",
        "method=dpo",
        f"method.beta={args.beta}",
        "dataset=hh_rlhf",
        f"dataset.path={train_file}",
        "dataset.val_fraction=0",
        f"dataset.max_length={args.max_length}",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"train.grad_accum={args.grad_accum}",
        f"train.torch_threads={args.threads}",
        f"train.save_steps={max(args.steps // 3, 1)}",
        "train.samples=0",
        f"optimizer.lr={args.lr}",
        f"tracking.uri={args.uri}",
        f"tracking.experiment={args.experiment}",
        f"cache_dir={Path(args.cache_dir).expanduser()}",
        f"hydra.run.dir={run_dir}",
    ]
    print("training:", "python train.py", " ".join(overrides[:-1]), flush=True)
    proc = subprocess.run([sys.executable, "train.py", *overrides], cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"error: train.py failed (exit {proc.returncode}); see its output above")
    return run_dir


@torch.no_grad()
def score(model, tokenizer, encoded, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rejected) summed log-probs (N,) with the adapters as they are."""
    collate = Collator(tokenizer.pad_token_id, pairs=True)
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].length)
    chosen, rejected = np.zeros(len(encoded)), np.zeros(len(encoded))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = [
            {"prompt_ids": e.prompt_ids, "chosen_ids": e.chosen_ids, "rejected_ids": e.rejected_ids,
             "index": i, "h_w": 0, "h_l": 0}
            for i, e in ((i, encoded[i]) for i in idx)
        ]  # fmt: skip
        batch = {
            k: v.to(model.device) if torch.is_tensor(v) else v for k, v in collate(rows).items()
        }
        logps, _, _ = forward_logps(model, batch)
        chosen[idx] = logps[: len(idx)].double().cpu().numpy()
        rejected[idx] = logps[len(idx) :].double().cpu().numpy()
    return chosen, rejected


def bootstrap(stat, n: int, boot: int, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of stat(indices) over `boot` resamples of n pairs."""
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, n)) for _ in range(boot)]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def metrics(base: tuple, trained: tuple, beta: float, boot: int) -> dict[str, float]:
    """Accuracies, their bootstrap intervals and the paired differences (see the module doc)."""
    base_c, base_r = base
    c, r = trained
    like_base = (base_c > base_r).astype(float)
    like_trained = (c > r).astype(float)
    margin = beta * ((c - base_c) - (r - base_r))
    reward = (margin > 0) + 0.5 * (margin == 0)  # ties count half, as for the base model
    n = len(c)
    out = {"n_pairs": float(n), "reward_margin_mean": float(margin.mean())}
    for name, values in (
        ("likelihood_accuracy_base", like_base),
        ("likelihood_accuracy_trained", like_trained),
        ("likelihood_accuracy_gain", like_trained - like_base),
        ("reward_accuracy_trained", reward),
        ("reward_accuracy_gain", reward - 0.5),
    ):
        out[name] = float(values.mean())
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = bootstrap(
            lambda i, v=values: v[i].mean(), n, boot
        )
    out["reward_accuracy_base"] = 0.5
    return out


def load_trained(run_dir: Path):
    """(policy with the run's adapter, tokenizer, model config, beta) of a finished run."""
    import yaml

    from alignment.config import LoraConfig
    from alignment.models import load_policy, load_tokenizer

    resolved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    m = resolved["model"]
    model_cfg = ModelConfig(**{**m, "lora": LoraConfig(**m["lora"])})
    cache = resolved["cache_dir"]
    tokenizer = load_tokenizer(model_cfg, cache)
    adapter = str(run_dir / "adapter")
    model = load_policy(
        model_cfg, cache, torch.device("cpu"), adapter_path=adapter, trainable=False
    )
    model.eval()
    return model, tokenizer, model_cfg, resolved["method"]["beta"]


def heldout_scores(args: argparse.Namespace, heldout_file: Path, run_dir: Path):
    """Score the held-out pairs base vs trained; returns (metrics, per-pair rows)."""
    model, tokenizer, model_cfg, beta = load_trained(run_dir)
    examples = load_hh_rlhf(DatasetConfig(name="hh_rlhf", path=str(heldout_file)))
    encoded = encode_examples(
        tokenizer,
        examples,
        use_instruction=False,
        supports_system_role=model_cfg.supports_system_role,
    )
    keep = [i for i, e in enumerate(encoded) if e.length <= args.eval_max_length]
    if not keep:
        raise SystemExit(f"error: no held-out pair fits --eval-max-length {args.eval_max_length}")
    encoded = [encoded[i] for i in keep]
    with model.disable_adapter():
        base = score(model, tokenizer, encoded)
    trained = score(model, tokenizer, encoded)
    result = metrics(base, trained, beta, args.boot)
    result["skipped_malformed"] = float(args.heldout_rows - len(examples))
    result["dropped_long"] = float(len(examples) - len(keep))
    rows = [
        {"origin": examples[i].origin, "base_chosen": bc, "base_rejected": br,
         "trained_chosen": tc, "trained_rejected": tr}
        for i, bc, br, tc, tr in zip(keep, *base, *trained, strict=True)
    ]  # fmt: skip
    return result, rows


def table(result: dict[str, float]) -> str:
    pct = lambda key: f"{100 * result[key]:.1f}%"  # noqa: E731
    ci = lambda key: f"[{pct(key + '_ci_low')}, {pct(key + '_ci_high')}]"  # noqa: E731
    n = int(result["n_pairs"])
    return "\n".join(
        [
            f"| held-out pairs (n={n}) | base | trained | gain (95% CI) |",
            "|---|---|---|---|",
            f"| likelihood accuracy | {pct('likelihood_accuracy_base')} "
            f"{ci('likelihood_accuracy_base')} | {pct('likelihood_accuracy_trained')} "
            f"{ci('likelihood_accuracy_trained')} | {pct('likelihood_accuracy_gain')} "
            f"{ci('likelihood_accuracy_gain')} |",
            f"| implicit-reward accuracy | 50.0% (all margins 0) | "
            f"{pct('reward_accuracy_trained')} {ci('reward_accuracy_trained')} | "
            f"{pct('reward_accuracy_gain')} {ci('reward_accuracy_gain')} |",
        ]
    )


def log_to_mlflow(args, run_dir: Path, result: dict[str, float], files: list[Path]) -> str:
    """Held-out metrics and files into the train.py run; returns its id."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    client = MlflowClient(args.uri)
    ts = int(time.time() * 1000)
    items = [Metric(f"heldout/{k}", v, ts, 0) for k, v in result.items()]
    client.log_batch(run_id, metrics=items)
    tags = {"heldout_rows": str(args.heldout_rows), "heldout_data": args.data.name}
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    for path in files:
        client.log_artifact(run_id, str(path), "heldout")
    return run_id


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    from alignment.tracking import resolve_uri

    args.uri = resolve_uri(args.uri)  # train.py runs in the repo: pass an absolute sqlite path
    args.out = args.out.resolve()
    torch.set_num_threads(args.threads)
    train_file, heldout_file = split_rows(args)
    run_dir = train(args, train_file)
    result, rows = heldout_scores(args, heldout_file, run_dir)
    scores, report = args.out / "heldout_scores.jsonl", args.out / "heldout.md"
    scores.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report.write_text(table(result) + "\n")
    run_id = log_to_mlflow(args, run_dir, result, [scores, report])
    print(table(result))
    print(
        f"dropped {int(result['dropped_long'])} pairs over {args.eval_max_length} tokens, skipped "
        f"{int(result['skipped_malformed'])} malformed; MLflow run {run_id} ({args.uri})"
    )
    return result


if __name__ == "__main__":
    main()
