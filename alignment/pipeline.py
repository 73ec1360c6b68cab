"""run_training: config -> data -> model -> trainer -> MLflow, as a flat list of steps.

Everything that can reject bad input (data parsing, flags, lengths, the model files) runs before
the first training step, so a bad row never costs a half-finished run. A job that finds its own
checkpoint and MLflow run id in its output directory resumes both. With several ranks
(alignment/distributed.py) every rank runs the same steps; rank 0 alone tracks and writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
import yaml
from transformers import TrainingArguments, set_seed
from transformers.trainer_callback import ProgressCallback

from alignment import distributed
from alignment.config import RunConfig
from alignment.config.secrets import scrub
from alignment.data.collate import Collator
from alignment.data.prepare import PreparedData, prepare_data
from alignment.evaluation.runner import run_eval
from alignment.guards import NonFiniteError, NonFiniteGuard, failure_line
from alignment.init_adapter import resolve_init_adapter
from alignment.methods import Method, get_method
from alignment.models import load_base, load_policy, load_tokenizer, pick_device
from alignment.optim import trainer_max_grad_norm
from alignment.progress import TrainProgress
from alignment.risk.builder import RiskGateSkipped, preflight
from alignment.runinfo import run_name, run_tags
from alignment.summary import write_summary
from alignment.tracking import MlflowCallback, Tracker, flatten
from alignment.trainer import AlignmentTrainer

log = logging.getLogger(__name__)
DONE_FILE = "DONE"


def training_args(
    cfg: RunConfig, out: Path, device: torch.device, has_val: bool, parallel: dict | None = None
) -> TrainingArguments:
    """The Trainer's arguments; `parallel` adds the DDP/FSDP ones of a multi-rank run."""
    t, opt = cfg.train, cfg.optimizer
    eval_on = has_val and t.eval_steps > 0
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=opt.lr,
        weight_decay=opt.weight_decay,
        lr_scheduler_type=opt.scheduler,
        # An int >= 1 is a step count, a float < 1 a ratio of the total steps.
        warmup_steps=opt.warmup_steps or opt.warmup_ratio,
        max_grad_norm=trainer_max_grad_norm(opt),  # 0 when the optimizer clips itself
        logging_steps=t.logging_steps,
        # Off: the filter re-logs a NaN loss as the running mean (0 right after a logging step)
        # and syncs on every micro-batch; alignment/guards.py checks each optimizer step instead.
        logging_nan_inf_filter=False,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if eval_on else "no",
        eval_steps=t.eval_steps if eval_on else None,
        seed=cfg.seed,
        bf16=device.type == "cuda" and cfg.model.dtype == "bfloat16",
        use_cpu=device.type == "cpu",
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        dataloader_num_workers=0,
        disable_tqdm=False,
        **(parallel or {}),
    )


def last_complete_checkpoint(root: Path) -> str | None:
    """The newest checkpoint that was fully written. The Trainer writes trainer_state.json last,
    so a checkpoint without it was cut off (preempted mid-save) and is skipped."""
    if not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def run_training(cfg: RunConfig) -> float | None:
    if cfg.stages:  # a stacked run: run_training once per stage, under a parent run
        from alignment.stacked import run_stacked

        return run_stacked(cfg)
    out = Path(cfg.output_dir)
    if (out / DONE_FILE).is_file():
        run_id = (out / "mlflow_run_id").read_text() if (out / "mlflow_run_id").is_file() else "-"
        log.info(
            "%s is complete (MLflow run %s); nothing to do. Add tag=<name> for a new run.",
            out,
            run_id,
        )
        return json.loads((out / DONE_FILE).read_text()).get("final_loss")
    if cfg.train.torch_threads > 0:
        torch.set_num_threads(cfg.train.torch_threads)
    cfg = resolve_init_adapter(cfg)  # run:<id> -> its adapter; one line if there is none
    set_seed(cfg.seed)
    method = get_method(cfg.method)
    # Joins the process group when a launcher started several ranks; a no-op for one process.
    device = distributed.setup(pick_device(cfg.train.device))
    try:
        return _run(cfg, method, device, out)
    finally:
        distributed.shutdown()


def _run(cfg: RunConfig, method: Method, device: torch.device, out: Path) -> float | None:
    """The run on every rank. Rank 0 alone tracks, writes the output directory and marks it done;
    the other ranks return None."""
    main = distributed.is_main()
    # Rank 0 first: it builds a local model's weights on a cache miss (under torch.distributed
    # transformers writes model files on rank 0 only), which the others then load.
    tokenizer = distributed.main_first(lambda: load_tokenizer(cfg.model, cfg.cache_dir))
    # All input validation happens here; rank 0 first, so the others reuse its tokenised data.
    data = distributed.main_first(lambda: prepare_data(cfg, method, tokenizer))
    if distributed.broadcast(data.reference is None):
        # train.reference=auto went online on rank 0; a cache entry that another job wrote since
        # must not send a later rank the cached way (the ranks would wait on each other).
        data.reference = None

    tracker = _start_tracking(cfg, out, data) if main else None
    try:
        model, final, step = None, None, 0
        if method.trains:
            model, final, step = _train(cfg, method, device, tokenizer, data, tracker, out)
        if cfg.eval_after_train and cfg.eval.suites() and main:
            key = f"run:{tracker.run_id}" if tracker and tracker.run_id else f"dir:{out.resolve()}"
            model = model if model is not None else load_base(cfg.model, cfg.cache_dir, device)
            run_eval(
                cfg,
                model,
                tokenizer,
                tracker,
                weights_key=key,
                has_adapter=method.trains,
                step=step,
            )
    except RiskGateSkipped as skipped:  # a planned outcome: the sweep goes on (exit 0)
        log.warning("%s", skipped)
        if tracker is not None:
            tracker.end("KILLED")  # tagged risk_gate=skipped, with the forecast figure
        (out / DONE_FILE).write_text(json.dumps({"final_loss": None, "risk_gate": "skipped"}))
        return None
    except Exception as err:
        if tracker is not None:  # failed, not killed: say why in the run itself
            tracker.set_tags({"failure": failure_line(err)})
            tracker.end("FAILED")
        raise
    except BaseException:
        if tracker is not None:
            tracker.end("KILLED")
        raise
    if tracker is not None:
        tracker.end("FINISHED")
    if main:
        (out / DONE_FILE).write_text(json.dumps({"final_loss": final}))
    return final


def _start_tracking(cfg: RunConfig, out: Path, data: PreparedData) -> Tracker | None:
    """Create (or reopen, on resume) the MLflow run: params, tags, data counts, the config."""
    if not cfg.tracking.enabled:
        return None
    tracker = Tracker(cfg.tracking, out)
    tracker.start(flatten(dataclasses.asdict(cfg)), run_tags(cfg), run_name(cfg))
    tracker.log_metrics(data.counts, step=0)
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "resolved_config.yaml"
    # Scrubbed: a tag or run name may carry an interpolated ${oc.env:...} secret.
    resolved.write_text(yaml.safe_dump(scrub(dataclasses.asdict(cfg)), sort_keys=False))
    tracker.log_artifact(resolved)
    if (out / ".hydra").is_dir():  # the composed config and the overrides, as Hydra wrote them
        tracker.log_artifact(out / ".hydra", ".hydra")
    return tracker


def build_trainer(
    cfg: RunConfig,
    method: Method,
    device: torch.device,
    tokenizer,
    data: PreparedData,
    out: Path,
    callbacks: list | None = None,
    tracker: Tracker | None = None,
) -> AlignmentTrainer:
    """The policy (LoRA on the base) and the Trainer over the prepared data. The risk preflight
    (when configured) runs on the fresh policy first and may stop the run (RiskGateSkipped);
    the reference log-probs are attached next when the method caches them."""
    fsdp = cfg.train.distributed == "fsdp" and distributed.is_distributed()
    model = load_policy(cfg.model, cfg.cache_dir, device, fsdp=fsdp)
    parallel = distributed.trainer_args(cfg.train.distributed, model)
    risk = preflight(cfg, method, model, tokenizer, data, device, tracker, out)
    if data.reference is not None:
        data.attach_reference(data.reference(model))
    trainer = AlignmentTrainer(
        model=model,
        args=training_args(cfg, out, device, data.val is not None, parallel),
        train_dataset=data.train,
        eval_dataset=data.val,
        data_collator=Collator(tokenizer.pad_token_id, pairs=method.needs_pairs),
        processing_class=tokenizer,
        callbacks=callbacks,
        method=method,
        method_cfg=cfg.method,
        optimizer_cfg=cfg.optimizer,
        completion_only_logits=cfg.train.completion_only_logits,
        guard=NonFiniteGuard(cfg.train.nan_policy, cfg.train.max_consecutive_skips),
        regularizer=risk.regularizer if risk is not None else None,
    )
    trainer.remove_callback(ProgressCallback)  # the bar shows three numbers, not every log dict
    trainer.add_callback(TrainProgress)
    if "fsdp" in parallel and not trainer.is_fsdp_enabled:  # never DDP under an FSDP label
        raise distributed.StrategyError("train.distributed=fsdp: accelerate did not enable FSDP")
    return trainer


def _train(
    cfg: RunConfig, method: Method, device, tokenizer, data: PreparedData, tracker, out: Path
):
    callbacks = [MlflowCallback(tracker)] if tracker is not None else None
    trainer = build_trainer(cfg, method, device, tokenizer, data, out, callbacks, tracker)
    if tracker is not None and "refcache/hit" in data.counts:
        tracker.log_metrics({"refcache/hit": data.counts["refcache/hit"]}, step=0)
    # Rank 0 decides, so that every rank resumes from the same checkpoint.
    last = distributed.broadcast(last_complete_checkpoint(out / "checkpoints"))
    if last:
        log.info("resuming from %s", last)
    try:
        trainer.train(resume_from_checkpoint=last)
    except NonFiniteError as err:  # nothing after the last finite step was saved
        kept = last_complete_checkpoint(out / "checkpoints") or "none saved yet"
        raise NonFiniteError(f"{err}; last checkpoint: {kept}") from None
    model, adapter_dir = trainer.model, out / "adapter"
    if trainer.is_fsdp_enabled:  # the adapter is sharded: every rank takes part in gathering it
        trainer.save_model(str(adapter_dir))
        cfg = _without_samples(cfg)
    if not distributed.is_main():  # the Trainer saved checkpoints on rank 0 only; so do we
        return model, None, trainer.state.global_step
    if not trainer.is_fsdp_enabled:
        # The trained adapter only: an init adapter's frozen reference copy is not the result.
        model.save_pretrained(adapter_dir, selected_adapters=[model.active_adapter])
        tokenizer.save_pretrained(adapter_dir)
    final = write_summary(cfg, trainer, tracker, adapter_dir, out)
    return model, final, trainer.state.global_step


def _without_samples(cfg: RunConfig) -> RunConfig:
    """Under FSDP rank 0 alone cannot run the sharded model, so no before/after samples."""
    if cfg.train.samples > 0:
        log.warning("train.samples=%d skipped under FSDP: evaluate the adapter", cfg.train.samples)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, samples=0))
