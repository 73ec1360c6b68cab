"""Shared pieces of the benchmarks: config composition, per-step timing, token counting, peak
memory, one-subprocess-per-leg runs and the printed summary.

Every benchmark runs each leg (a trainer, a loop, an optimizer) in a fresh Python process, so
the peak RSS and the allocator state of one leg never leak into the next, and legs of different
kinds alternate (A B A B ...) so slow drifts of a shared machine hit all of them alike. A leg
reports back one JSON line on stdout, tagged with RESULT_TAG.

Printed ratios have the form `ratio <name> = <float>`; tests/bench/test_bench_smoke.py parses
them, so keep that shape.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parent process never imports torch: only the legs pay for it
    import torch

REPO = Path(__file__).resolve().parents[1]
RESULT_TAG = "BENCH_RESULT "


# -- config ---------------------------------------------------------------------------------------
def run_overrides(out: Path, batch_size: int, steps: int) -> list[str]:
    """The settings every benchmark leg shares: no tracking, no checkpoints, a log line a step."""
    return [
        f"output_dir={out}",
        "tracking.enabled=false",
        f"train.batch_size={batch_size}",
        "train.grad_accum=1",
        f"train.max_steps={steps}",
        "train.logging_steps=1",
        "train.save_steps=1000000",
        "train.eval_steps=0",
    ]


def compose_run(overrides: Sequence[str]):
    """A RunConfig from conf/train.yaml plus Hydra overrides (output_dir must be among them)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        composed = compose("train", overrides=list(overrides))
    return OmegaConf.to_object(composed)


# -- measuring ------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def step_timer(device: torch.device):
    """A TrainerCallback recording the wall time of every optimizer step (on_step_begin ->
    on_step_end) and of every full loop iteration (on_step_end -> on_step_end: data loading,
    logging and callbacks included). On CUDA it synchronises at both ends, so a step's queued
    kernels are charged to that step.
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begins: list[float] = []
            self.ends: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            _sync(device)
            self.begins.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            self.ends.append(time.perf_counter())

        def steps(self) -> list[float]:
            return [e - b for b, e in zip(self.begins, self.ends, strict=False)]

        def loops(self) -> list[float]:
            """Iteration k >= 1 is ends[k] - ends[k-1]; iteration 0 has none (NaN)."""
            return [float("nan")] + [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]

    return StepTimer()


class TokenCounter:
    """Wraps a collator and records, per batch, the non-pad tokens and the per-row lengths.

    With gradient accumulation 1 and no dataloader workers, batch k is the batch of step k. The
    row lengths fingerprint a batch, so two trainers can be checked to have seen the same data.
    """

    def __init__(self, collate: Callable[[list[dict]], dict[str, Any]]) -> None:
        self.collate = collate
        self.tokens: list[int] = []
        self.rows: list[list[int]] = []

    def __call__(self, features: list[dict]) -> dict[str, Any]:
        batch = self.collate(features)
        lengths = batch["attention_mask"].sum(dim=1)
        self.tokens.append(int(lengths.sum()))
        self.rows.append([int(n) for n in lengths])
        return batch


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident set size of this process, and the CUDA allocator's peak when on a GPU."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        import torch

        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def losses_from(log_history: list[dict]) -> list[float]:
    return [h["loss"] for h in log_history if "loss" in h]


# -- subprocess legs ------------------------------------------------------------------------------
def bench_env() -> dict[str, str]:
    """The legs' environment. PYTHONPATH starts with this checkout: `python bench/x.py` puts
    bench/, not the repository, first on sys.path, so without it a leg would import `alignment`
    from wherever an editable install points (another worktree of the same venv, say)."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def emit(result: dict[str, Any]) -> None:
    """Hand a leg's result to the parent process."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_leg(script: Path, argv: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run `python script argv` in a fresh process and return the JSON it emitted."""
    cmd = [sys.executable, str(script), *argv]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=bench_env(), cwd=REPO, timeout=timeout
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    raise RuntimeError(f"leg failed (rc={proc.returncode}): {' '.join(cmd)}\n{tail}")


def run_rotated(
    script: Path, argv: Sequence[str], legs: Sequence[str], repeats: int, save: str | None = None
) -> dict[str, list[dict]]:
    """Run every leg `repeats` times, each in a fresh process (`--worker <leg>` appended).

    The order rotates each repeat (A B C, B C A, C A B, ...), so a load that drifts during the
    benchmark (a shared machine) does not always favour the leg that runs last. `save` keeps
    every leg's raw record as JSON.
    """
    results: dict[str, list[dict]] = {leg: [] for leg in legs}
    start = time.perf_counter()
    for r in range(repeats):
        order = list(legs[r % len(legs) :]) + list(legs[: r % len(legs)])
        for position, leg in enumerate(order):
            print(f"repeat {r + 1}/{repeats}: {leg}", flush=True)
            record = run_leg(script, [*argv, "--worker", leg])
            record.update(repeat=r, position=position, started_s=time.perf_counter() - start)
            results[leg].append(record)
            if save:  # after every leg, so a killed run keeps what it measured
                Path(save).write_text(json.dumps(results))
    return results


# -- summarising ----------------------------------------------------------------------------------
def print_per_repeat(results: dict[str, list[dict]], warmup: int) -> None:
    """Median step time of each leg in each repeat, with its place in the run order."""
    for leg, runs in results.items():
        cells = [f"{median(measured(r['steps'], warmup)):.4g}s (#{r.get('position', 0) + 1})"
                 for r in runs]  # fmt: skip
        print(f"  {leg}: " + ", ".join(cells))


def measured(values: Sequence[float], warmup: int) -> list[float]:
    """The values after the first `warmup` steps (at least the last one is kept)."""
    kept = [v for v in values[warmup:] if v == v]  # drop NaN placeholders
    return kept or [v for v in values if v == v][-1:]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def best_repeat(runs: Sequence[dict], warmup: int) -> float:
    """The fastest repeat's median step time: on a shared machine, other jobs only ever add
    time, so this is the least disturbed estimate."""
    return min(median(measured(r["steps"], warmup)) for r in runs)


def tokens_per_s(tokens: Sequence[int], seconds: Sequence[float], warmup: int) -> float:
    n = len(seconds)
    tok, sec = list(tokens[warmup:n]), list(seconds[warmup:n])
    if not sec:
        tok, sec = list(tokens[n - 1 : n]), list(seconds[-1:])
    return sum(tok) / max(sum(sec), 1e-12)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def print_ratio(name: str, value: float) -> None:
    print(f"ratio {name} = {value:.3f}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def train_measured(trainer, device: torch.device) -> dict[str, Any]:
    """Run `trainer.train()` with a StepTimer and a TokenCounter attached; return the record."""
    import torch

    timer = step_timer(device)
    trainer.add_callback(timer)
    counter = TokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train()
    n = len(timer.ends)
    return {
        "steps": timer.steps(),
        "loops": timer.loops(),
        "tokens": counter.tokens[:n],
        "rows": counter.rows[:n],
        "losses": losses_from(trainer.state.log_history),
        **peak_memory_mb(device),
    }


# -- building a leg -------------------------------------------------------------------------------
def setup_run(overrides: Sequence[str]):
    """(cfg, method, device) of one leg; torch threads and the seed set as run_training does."""
    import torch
    from transformers import set_seed

    from alignment.methods import get_method
    from alignment.models import pick_device

    cfg = compose_run(overrides)
    if cfg.train.torch_threads > 0:
        torch.set_num_threads(cfg.train.torch_threads)
    set_seed(cfg.seed)
    return cfg, get_method(cfg.method), pick_device(cfg.train.device)


def setup_leg(overrides: Sequence[str]):
    """Config, method, device, tokenizer and prepared data of one leg, as run_training gets them.

    Returns (cfg, method, device, tokenizer, data); data.val is dropped (no evaluation here).
    Tokenisation is cached on disk, so only the first leg of a benchmark pays for it.
    """
    from alignment.data.prepare import prepare_data
    from alignment.models import load_tokenizer

    cfg, method, device = setup_run(overrides)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = prepare_data(cfg, method, tokenizer)
    data.val = None
    return cfg, method, device, tokenizer, data


def our_trainer(cfg, method, model, tokenizer, train, out: Path, device: torch.device, **overrides):
    """AlignmentTrainer exactly as alignment.pipeline._train builds it (no tracking callback).

    `tokenizer` needs only `pad_token_id` when it is not a real tokenizer (synthetic data): it is
    then not handed to the Trainer. `overrides` set TrainingArguments fields after
    training_args() (e.g. the sampling strategy).
    """
    from transformers import PreTrainedTokenizerBase

    from alignment.data.collate import Collator
    from alignment.pipeline import training_args
    from alignment.trainer import AlignmentTrainer

    args = training_args(cfg, out, device, has_val=False)
    for name, value in overrides.items():
        setattr(args, name, value)
    return AlignmentTrainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=Collator(tokenizer.pad_token_id, pairs=method.needs_pairs),
        processing_class=tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else None,
        method=method,
        method_cfg=cfg.method,
        optimizer_cfg=cfg.optimizer,
        completion_only_logits=cfg.train.completion_only_logits,
    )


def timed_reference(model, data, pad_token_id: int, batch_size: int) -> float:
    """Precompute the reference log-probs of data.train (as a refcache miss does), attach them to
    the rows and return the seconds it took."""
    from alignment.refcache import compute_reference

    start = time.perf_counter()
    refs = compute_reference(model, data.train, pad_token_id, batch_size)
    seconds = time.perf_counter() - start
    data.attach_reference({"train": refs})
    return seconds
