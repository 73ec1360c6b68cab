"""The preflight of one training run: flattens cfg.risk, cfg.regularizer and the run's own
settings (method, learning rate, batch size, planned steps, seed) into the keyword arguments of
the alignment.risk maths, records the result in the run's MLflow run, applies the sweep gate and
builds the regulariser from the same subspace.

Called by the pipeline on the freshly built policy, before the reference log-probs and the
Trainer: a bad key, a gate that skips, or a scale-guard refusal costs no training step.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from datasets import Dataset

from alignment.config import RunConfig
from alignment.risk.artifacts import write_artifacts
from alignment.risk.params import RiskInputError, Selection, is_lora, select_parameters
from alignment.risk.preflight import PreflightReport, assess, estimate_subspace
from alignment.risk.regularizers import Regularizer, build_regularizer
from alignment.risk.runner import (
    cached_subspace,
    finetune_batches,
    gate_verdict,
    method_loss,
    subspace_key,
)
from alignment.risk.safety import dpo_pair_loss, pair_batches
from alignment.risk.subspace import SafetySubspace

log = logging.getLogger(__name__)
VERDICT_TAGS = {"pass": "passed", "warn": "warned", "skip": "skipped"}


class RiskGateSkipped(Exception):
    """risk.gate=skip and the forecast collapse step falls within the run's planned steps."""


@dataclass
class Guard:
    report: PreflightReport
    verdict: str  # pass | warn | skip
    planned_steps: int
    regularizer: Regularizer | None


def needs_preflight(cfg: RunConfig) -> bool:
    return cfg.risk.runs or cfg.regularizer is not None


def planned_steps(cfg: RunConfig, n_train: int) -> int:
    """Optimizer steps the run will take: train.max_steps, else epochs over the data (the
    Trainer's count: ceil(epochs * ceil(ceil(n / batch) / grad_accum)))."""
    t = cfg.train
    if t.max_steps > 0:
        return t.max_steps
    per_epoch = max(1, math.ceil(math.ceil(n_train / t.batch_size) / t.grad_accum))
    return math.ceil(t.epochs * per_epoch)


def safety_rows(cfg: RunConfig, tokenizer) -> Dataset:
    """risk.safety tokenised and validated as a DPO dataset of this model (the training data's
    own path: parsing, templates, length filter, the tokenisation cache)."""
    from alignment.data.prepare import prepare_data
    from alignment.data.types import DataError
    from alignment.methods import DpoConfig, get_method

    dpo = DpoConfig(name="dpo")
    safety_cfg = dataclasses.replace(
        cfg,
        dataset=cfg.risk.safety,
        method=dpo,
        train=dataclasses.replace(cfg.train, reference="online"),  # no reference cache here
    )
    try:
        return prepare_data(safety_cfg, get_method(dpo), tokenizer).train
    except DataError as err:
        raise RiskInputError(f"risk.safety ({cfg.risk.safety.name}): {err}") from None


def safety_subspace(
    cfg: RunConfig, model, tokenizer, selection: Selection
) -> tuple[SafetySubspace, bool]:
    """The safety subspace (estimated, or from the cache when risk.cache); whether it was a hit."""
    r = cfg.risk
    rows = safety_rows(cfg, tokenizer)
    rows = rows.select(range(min(len(rows), r.max_samples)))
    settings = dict(
        max_samples=r.max_samples,
        top_rank=r.top_rank,
        target_explained_variance=r.target_explained_variance,
        top_weight_count=r.top_weight_count,
    )

    def compute() -> SafetySubspace:
        batches = pair_batches(
            model, rows, tokenizer.pad_token_id, batch_size=r.safety_batch_size,
            max_pairs=r.max_samples, source=f"risk.safety ({r.safety.name})",
        )  # fmt: skip
        loss = partial(dpo_pair_loss, beta=r.safety_beta)
        return estimate_subspace(model, selection, batches, loss, backend=r.backend, **settings)

    if not r.cache:
        return compute(), False
    identity = [dataclasses.asdict(cfg.model), r.safety_beta]
    key = subspace_key(identity, selection, rows, settings)
    return cached_subspace(
        Path(cfg.cache_dir).expanduser() / "risk" / f"{key}.safetensors", compute
    )


def run_assessment(cfg: RunConfig, method, model, tokenizer, data, device):
    """(selection, subspace, cache hit, report, planned steps) of this run, nothing recorded."""
    r = cfg.risk
    selection = select_parameters(model, r.parameter_names, max_parameters=r.max_parameters)
    if cfg.regularizer is not None and not all(is_lora(n) for n in selection.names):
        bad = next(n for n in selection.names if not is_lora(n))
        raise RiskInputError(
            f"regularizer={cfg.regularizer.name} needs LoRA modules: risk.parameter_names "
            f"selects {bad!r}, not a LoRA factor"
        )
    subspace, hit = safety_subspace(cfg, model, tokenizer, selection)
    planned = planned_steps(cfg, len(data.train))
    ft = finetune_batches(
        data.train, tokenizer.pad_token_id, pairs=method.needs_pairs,
        batch_size=cfg.train.batch_size, count=max(r.curvature_batches, r.refine_batches),
        seed=cfg.seed, device=device,
    )  # fmt: skip
    report = assess(
        model, selection, subspace, ft,
        method_loss(method, cfg.method, completion_only=cfg.train.completion_only_logits),
        learning_rate=r.learning_rate or cfg.optimizer.lr,
        orthogonality_threshold=r.orthogonality_threshold, curvature_batches=r.curvature_batches,
        refine=r.refine, refine_batches=r.refine_batches, refine_fraction=r.refine_fraction,
        max_steps=max(r.max_steps, planned), collapse_loss_threshold=r.collapse_loss_threshold,
        trust_region_warning_ratio=r.trust_region_warning_ratio,
    )  # fmt: skip
    return selection, subspace, hit, report, planned


def preflight(cfg: RunConfig, method, model, tokenizer, data, device, tracker, out: Path):
    """Run the preflight when the config asks for it (risk, gate or regularizer): returns the
    Guard (with the regulariser, anchored now, at the start of training) or None; raises
    RiskGateSkipped after recording the verdict when the gate skips the run."""
    if not needs_preflight(cfg):
        return None
    if not method.trains:
        log.info("risk: method=%s trains nothing; no preflight", cfg.method.name)
        return None
    selection, subspace, hit, report, planned = run_assessment(
        cfg, method, model, tokenizer, data, device
    )
    verdict = gate_verdict(report.forecast.collapse_step, planned, cfg.risk.gate)
    record(report, cfg.risk.gate, verdict, planned, hit, tracker, out)
    if verdict == "skip":
        raise RiskGateSkipped(
            f"risk.gate=skip: collapse forecast at step {report.forecast.collapse_step} within "
            f"the run's {planned} planned steps; training skipped"
        )
    reg = (
        None if cfg.regularizer is None else build_regularizer(cfg.regularizer, selection, subspace)
    )
    return Guard(report, verdict, planned, reg)


def record(report, gate: str, verdict: str, planned: int, hit: bool, tracker, out: Path) -> None:
    """Metrics, figures, the JSON arrays and the gate's tags into the run; the warning logged."""
    paths = write_artifacts(report, out / "risk", planned)
    level = logging.WARNING if verdict != "pass" else logging.INFO
    log.log(level, "risk preflight: %s (gate %s: %s)", report.warning, gate, verdict)
    if tracker is None:
        return
    extra = {"risk/planned_steps": float(planned), "risk/subspace_cache_hit": float(hit)}
    tracker.log_metrics(report.metrics() | extra, step=0)
    for path in paths:
        tracker.log_artifact(path, "risk")
    tracker.set_tags(
        {
            "risk_gate": "off" if gate == "off" else VERDICT_TAGS[verdict],
            "risk_backend": report.subspace.backend,
            "risk_warning": report.warning,
        }
    )


def summary_line(report: PreflightReport, planned: int, verdict: str) -> str:
    f = report.forecast
    collapse = "none" if f.collapse_step is None else str(f.collapse_step)
    return (
        f"collapse_step={collapse} (horizon {int(f.steps[-1])}, planned {planned}) -> {verdict}; "
        f"overlap={report.overlap.ratio:.4g} eps_hat={report.coupling.eps_hat:.4g} "
        f"gamma_hat={report.coupling.gamma_hat:.4g} rank={report.subspace.rank} "
        f"eta={report.learning_rate:g}"
    )
