"""The preflight alone, for a run's config: `python -m alignment.risk <overrides>` (logged to an
MLflow run of its own, tag kind=preflight) and `scripts/plan_sweep.py --risk` (no tracking).

It prepares the data and builds the policy exactly as the training run would (same seed, so the
same LoRA initialisation and the same cached subspace), then runs and records the preflight.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import torch
from transformers import set_seed

from alignment.config import RunConfig
from alignment.risk.builder import record, run_assessment, summary_line
from alignment.risk.params import RiskInputError
from alignment.risk.preflight import PreflightReport
from alignment.risk.runner import gate_verdict

log = logging.getLogger(__name__)


def preflight_only(cfg: RunConfig, *, track: bool = True) -> tuple[PreflightReport, int, str]:
    """(report, planned steps, gate verdict) of the run `cfg` describes, without training it."""
    from alignment.data.prepare import prepare_data
    from alignment.methods import get_method
    from alignment.models import load_policy, load_tokenizer, pick_device

    if cfg.train.torch_threads > 0:
        torch.set_num_threads(cfg.train.torch_threads)
    set_seed(cfg.seed)
    method = get_method(cfg.method)
    if not method.trains:
        raise RiskInputError(f"method={cfg.method.name} trains nothing: there is no run to check")
    device = pick_device(cfg.train.device)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = prepare_data(cfg, method, tokenizer)
    out = Path(cfg.output_dir) if track else Path(tempfile.mkdtemp(prefix="preflight_"))
    tracker = _tracker(cfg, out) if track and cfg.tracking.enabled else None
    try:
        model = load_policy(cfg.model, cfg.cache_dir, device)
        _, _, hit, report, planned = run_assessment(cfg, method, model, tokenizer, data, device)
        verdict = gate_verdict(report.forecast.collapse_step, planned, cfg.risk.gate)
        record(report, cfg.risk.gate, verdict, planned, hit, tracker, out)
    except BaseException:
        if tracker is not None:
            tracker.end("FAILED")
        raise
    if tracker is not None:
        tracker.end("FINISHED")
    log.info("risk preflight: %s; artifacts in %s", summary_line(report, planned, verdict), out)
    return report, planned, verdict


def _tracker(cfg: RunConfig, out: Path):
    from alignment.runinfo import run_name, run_tags
    from alignment.tracking import Tracker, flatten

    tracker = Tracker(cfg.tracking, out)
    tags = run_tags(cfg) | {"kind": "preflight"}
    tracker.start(flatten(dataclasses.asdict(cfg)), tags, run_name(cfg, "preflight"))
    return tracker
