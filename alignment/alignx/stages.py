"""The AlignX-repro training driver: stage 1 and stage 2 as nested MLflow runs under the run
train.py created (the parent), each resumable on its own.

    <out>/stage1/   checkpoints, adapter/ (experts, projector), mlflow_run_id, DONE
    <out>/stage2/   mlflow_run_id, DONE
    <out>/adapter/  the final model: experts, MoCaE state, alignx.json (what evaluate.py loads)

Stage 1 trains the experts with the pipeline's own Trainer (checkpoints, resume after kill -9
into the same child run), then fits the projector on the base model's pooled prompt states.
Stage 2 (seconds) fits the router and the calibrators; a resumed stage 2 fits again from its
seed and gives the same weights. Prompts for both fits have no injected prefix: at inference
the router sees the user's prompt only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from alignment.alignx.experts import ExpertsExtension, load_experts
from alignment.alignx.fit import accuracy, fit_projector, fit_router, prompt_states
from alignment.alignx.locate import locate_stage1
from alignment.alignx.mixing import one_hot_coeffs
from alignment.alignx.mocae import Mocae, load_mocae, save_mocae
from alignment.alignx.model import SETTINGS_FILE, AlignxModel, MixSettings, load_alignx_model
from alignment.axes import AXES
from alignment.data.collate import Collator
from alignment.models.steered import SteeredModel
from alignment.trainer import AlignmentTrainer

log = logging.getLogger(__name__)
DONE = "DONE"


class ExpertTrainer(AlignmentTrainer):
    """Stage 1: before each forward, route every row through its own axis's expert."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        extension = self.accelerator.unwrap_model(model).extension
        extension.coeffs = one_hot_coeffs(inputs["axis"], len(AXES))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def stage1_model(cfg, device: torch.device) -> SteeredModel:
    """New LoRA experts (one per axis) hooked in for per-row routing."""
    experts = load_experts(cfg.model, cfg.cache_dir, device, list(AXES))
    return SteeredModel(experts, ExpertsExtension(list(AXES)))


def evaluation_model(cfg, device: torch.device, saved: Path) -> AlignxModel:
    if not (saved / SETTINGS_FILE).is_file():
        raise FileNotFoundError(
            f"{saved} holds no AlignX-repro model ({SETTINGS_FILE} missing): a method.stage=1 run "
            "has experts only; run stage 2 with method.stage=2 method.stage1_run=<its run id>"
        )
    return load_alignx_model(cfg.model, cfg.cache_dir, device, saved)


def settings(cfg) -> MixSettings:
    m = cfg.method
    values = (m.mix, m.temperature, m.lambda1, m.lambda2, m.combine, m.gamma)
    return MixSettings(tuple(AXES), *values)


def run_alignx(cfg, method, device, tokenizer, data, tracker, out: Path):
    """The pipeline's driver hook: returns (model, stage-1 final loss, stage-1 steps)."""
    start, stage = time.perf_counter(), str(cfg.method.stage)
    final, steps, model = None, 0, None
    if stage in ("all", "1"):
        stage1_dir, final, steps = _stage1(cfg, method, device, tokenizer, data, tracker, out)
    else:
        stage1_dir = locate_stage1(cfg, cfg.method.stage1_run)
    if stage in ("all", "2"):
        model = _stage2(cfg, method, device, tokenizer, tracker, stage1_dir, out)
    if tracker is not None:
        from alignment.summary import peak_memory_gb

        runtime = {"train/train_runtime": time.perf_counter() - start}
        tracker.log_metrics(runtime | {"train/peak_memory_gb": peak_memory_gb()}, steps)
    return model, final, steps


def child_tracker(cfg, parent, directory: Path, stage: str):
    """A nested MLflow run for one stage (reopened on resume), tagged kind=stage and
    alignx=<the parent's run name>; nested through its creation tags once MLflow has created the
    parent (awaited within tracking.flush_timeout_s), else only tagged."""
    if parent is None:
        return None
    from alignment.runinfo import run_name, run_tags
    from alignment.tracking import Tracker, flatten

    tags = run_tags(cfg) | {"kind": "stage", "alignx_stage": stage, "alignx": run_name(cfg)}
    parent_id = parent.created_run_id()
    if parent_id is not None:  # over a sweep's parent from the environment
        tags["mlflow.parentRunId"] = parent_id
    else:
        log.warning(
            "AlignX-repro: MLflow has not created the parent run within %.0f s; stage %s logs "
            "its own run, tagged alignx=<parent run name>, not nested under it",
            cfg.tracking.flush_timeout_s,
            stage,
        )
    child = Tracker(cfg.tracking, directory)
    child.start(flatten(dataclasses.asdict(cfg)), tags, run_name(cfg, f"stage{stage}"))
    return child


def _end_failed(child, err: BaseException) -> None:
    """A stage that raised: FAILED with the reason as the pipeline ends its runs (KILLED when
    interrupted)."""
    if child is None:
        return
    if isinstance(err, Exception):
        from alignment.guards import failure_line

        child.set_tags({"failure": failure_line(err)})
        child.end("FAILED")
    else:
        child.end("KILLED")


def _stage1(cfg, method, device, tokenizer, data, parent, out: Path):
    from alignment.pipeline import build_trainer, last_complete_checkpoint
    from alignment.summary import write_summary
    from alignment.tracking import MlflowCallback

    directory = out / "stage1"
    adapter = directory / "adapter"
    if (directory / DONE).is_file():
        done = json.loads((directory / DONE).read_text())
        log.info("AlignX-repro stage 1 is complete in %s", directory)
        return adapter, done["final_loss"], done["steps"]
    child = child_tracker(cfg, parent, directory, "1")
    try:
        callbacks = [MlflowCallback(child)] if child is not None else None
        args = (cfg, method, device, tokenizer, data, directory, callbacks)
        trainer = build_trainer(*args, trainer_cls=ExpertTrainer)
        last = last_complete_checkpoint(directory / "checkpoints")
        if last:
            log.info("resuming from %s", last)
        trainer.train(resume_from_checkpoint=last)
        model = trainer.model
        model.extension.remove()  # the experts are plain peft adapters again
        model.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
        fit_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, samples=0))
        final = write_summary(fit_cfg, trainer, child, adapter, directory)
        _fit_projector(cfg, model.model, tokenizer, method, adapter, child)
        if child is not None:
            child.log_artifact(adapter, "adapter")
    except BaseException as err:
        _end_failed(child, err)
        raise
    steps = trainer.state.global_step
    (directory / DONE).write_text(json.dumps({"final_loss": final, "steps": steps}))
    if child is not None:
        child.end("FINISHED")
    return adapter, final, steps


_STATES: dict[str, tuple] = {}  # stage 1's prompt states, reused by stage 2 in the same process


def _states(cfg, model, tokenizer, method):
    """Pooled base prompt states (experts off) of every distinct prompt of the unprefixed axis
    data: (train states, axis), (val states, axis) or None. Computed once per process."""
    from alignment.data.axis_data import axis_sources, prepare_axis_data

    key = repr((cfg.model, cfg.dataset, cfg.method.data, cfg.train.batch_size))
    if key not in _STATES:
        sources = axis_sources(cfg.dataset, cfg.method.data)
        data = prepare_axis_data(cfg, sources, tokenizer, method, "longest")
        pad = tokenizer.pad_token_id
        states = [_split_states(model, data, split, pad) for split in ("train", "val")]
        _STATES.clear()
        _STATES[key] = tuple(states)
    return _STATES[key]


def _split_states(model, data, split: str, pad_token_id: int):
    """Each axis's distinct rows (items i < n_axis of the cycled dataset), prompts only."""
    dataset = getattr(data, split)
    if dataset is None:
        return None
    rows = []
    for a, axis in enumerate(AXES):
        for i in range(int(data.counts[f"data/{axis}/{split}_examples"])):
            prompt = dataset[i]["prompt_ids"][a]
            row = {"prompt_ids": prompt, "chosen_ids": [], "rejected_ids": [], "h_w": 0, "h_l": 0}
            rows.append((row | {"index": len(rows)}, a))
    collate = Collator(pad_token_id, pairs=False)

    def batch(chunk):
        return collate([f for f, _ in chunk]) | {"axis": torch.tensor([a for _, a in chunk])}

    size = 16
    return prompt_states(model, (batch(rows[i : i + size]) for i in range(0, len(rows), size)))


def _fit_projector(cfg, experts, tokenizer, method, adapter: Path, tracker) -> None:
    m = cfg.method
    (x, y), val = _states(cfg, experts, tokenizer, method)
    mocae = Mocae(x.shape[1], len(AXES), m.k, m.router_features, m.eps)
    losses = fit_projector(mocae, x, y, steps=m.projector_steps, lr=m.fit_lr, seed=cfg.seed)
    metrics = {"alignx/projector_loss": losses[-1] if losses else float("nan")}
    if val is not None:
        with torch.no_grad():
            logits = mocae.projector.axis_logits(mocae.latent(val[0]))
        metrics["alignx/projector_val_accuracy"] = accuracy(logits, val[1])
    log.info("AlignX-repro projector: %s", metrics)
    if tracker is not None:
        tracker.log_metrics({k: v for k, v in metrics.items() if v == v}, step=0)
    save_mocae(mocae, adapter)


def _stage2(cfg, method, device, tokenizer, parent, stage1_dir: Path, out: Path):
    directory = out / "stage2"
    child = child_tracker(cfg, parent, directory, "2")
    try:
        experts = load_experts(cfg.model, cfg.cache_dir, device, list(AXES), stage1_dir, False)
        model = AlignxModel(experts, load_mocae(stage1_dir), settings(cfg)).eval()
        (x, y), val = _states(cfg, model, tokenizer, method)
        m = cfg.method
        losses = fit_router(model.mocae, x, y, steps=m.router_steps, lr=m.fit_lr, seed=cfg.seed)
        metrics = {"alignx/router_loss": losses[-1]} if losses else {}
        if val is not None:
            metrics |= routing_accuracy(model, *val)
        log.info("AlignX-repro stage 2: %s", metrics)
        model.save_pretrained(out / "adapter")
        tokenizer.save_pretrained(out / "adapter")
        files = [out / "adapter", *_samples(cfg, model, tokenizer, out)]
        for tracker in (child, parent):
            if tracker is not None:
                tracker.log_metrics(metrics, step=0)
                for path in files:
                    tracker.log_artifact(path, path.name if path.is_dir() else None)
    except BaseException as err:
        _end_failed(child, err)
        raise
    directory.mkdir(parents=True, exist_ok=True)  # no child run (tracking off) made it
    (directory / DONE).write_text(json.dumps(metrics))
    if child is not None:
        child.end("FINISHED")
    return model


def routing_accuracy(model: AlignxModel, pooled: torch.Tensor, labels: torch.Tensor) -> dict:
    """Held-out axis accuracy of the router, each calibrator alone and the configured mixture."""
    s, mocae = model.settings, model.mocae
    with torch.no_grad():
        out = {"alignx/router_val_accuracy": accuracy(mocae.route_logits(pooled), labels)}
        for name, l1, l2 in (("natural", 1.0, 0.0), ("fractal", 0.0, 1.0)):
            w = mocae.weights(pooled, s.temperature, l1, l2, "calibration")
            out[f"alignx/{name}_val_accuracy"] = accuracy(w, labels)
        w = mocae.weights(pooled, s.temperature, s.lambda1, s.lambda2, s.combine)
        out["alignx/weights_val_accuracy"] = accuracy(w, labels)
        out["alignx/weights_entropy"] = float(-(w * w.clamp(min=1e-12).log()).sum(-1).mean())
    return out


def _samples(cfg, model, tokenizer, out: Path) -> list[Path]:
    if cfg.train.samples <= 0:
        return []
    from alignment.samples import before_after, to_markdown

    path = out / "samples.md"
    path.write_text(to_markdown(before_after(model, tokenizer, cfg.train.samples)))
    return [path]
