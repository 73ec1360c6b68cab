"""run_training: config -> data -> model -> trainer -> MLflow, as a flat list of steps.

Everything that can reject bad input (data parsing, flags, lengths, the model files) runs before
the first training step, so a bad row never costs a half-finished run. A job that finds its own
checkpoint and MLflow run id in its output directory resumes both.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
import yaml
from transformers import TrainingArguments, set_seed

from alignment.config import RunConfig
from alignment.data.collate import Collator
from alignment.data.prepare import PreparedData, prepare_data
from alignment.evaluation.runner import run_eval
from alignment.methods import Method, get_method
from alignment.models import load_base, load_policy, load_tokenizer, pick_device
from alignment.optim import trainer_max_grad_norm
from alignment.runinfo import run_name, run_tags
from alignment.summary import write_summary
from alignment.tracking import MlflowCallback, Tracker, flatten
from alignment.trainer import AlignmentTrainer

log = logging.getLogger(__name__)
DONE_FILE = "DONE"


def training_args(
    cfg: RunConfig, out: Path, device: torch.device, has_val: bool
) -> TrainingArguments:
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
        warmup_steps=opt.warmup_ratio,  # a float < 1 is a ratio of the total steps
        max_grad_norm=trainer_max_grad_norm(opt),  # 0 when the optimizer clips itself
        logging_steps=t.logging_steps,
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
    )


def last_complete_checkpoint(root: Path) -> str | None:
    """The newest checkpoint that was fully written. The Trainer writes trainer_state.json last,
    so a checkpoint without it was cut off (preempted mid-save) and is skipped."""
    if not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def run_training(cfg: RunConfig) -> float | None:
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
    set_seed(cfg.seed)
    method = get_method(cfg.method)
    device = pick_device(cfg.train.device)
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    # All input validation happens here (a method may bring its own data source).
    data = (method.prepare_data or prepare_data)(cfg, method, tokenizer)

    tracker = _start_tracking(cfg, out, data)
    try:
        model, final, step = None, None, 0
        if method.trains:
            model, final, step = _train(cfg, method, device, tokenizer, data, tracker, out)
        if cfg.eval_after_train and cfg.eval.suites():
            key = f"run:{tracker.run_id}" if tracker else f"dir:{out.resolve()}"
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
    except BaseException:
        if tracker is not None:
            tracker.end("KILLED")
        raise
    if tracker is not None:
        tracker.end("FINISHED")
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
    resolved.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
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
    trainer_cls: type[AlignmentTrainer] = AlignmentTrainer,
) -> AlignmentTrainer:
    """The policy (LoRA on the base, or the method's own model) and the Trainer over the prepared
    data; the reference log-probs are attached first when the method caches them."""
    if method.build_model is not None:
        model = method.build_model(cfg, device, None, True)
    else:
        model = load_policy(cfg.model, cfg.cache_dir, device)
    if data.reference is not None:
        data.attach_reference(data.reference(model))
    return trainer_cls(
        model=model,
        args=training_args(cfg, out, device, data.val is not None),
        train_dataset=data.train,
        eval_dataset=data.val,
        data_collator=data.collator or Collator(tokenizer.pad_token_id, pairs=method.needs_pairs),
        processing_class=tokenizer,
        callbacks=callbacks,
        method=method,
        method_cfg=cfg.method,
        optimizer_cfg=cfg.optimizer,
        completion_only_logits=cfg.train.completion_only_logits,
    )


def _train(
    cfg: RunConfig, method: Method, device, tokenizer, data: PreparedData, tracker, out: Path
):
    if method.driver is not None:  # e.g. AlignX's two stages
        return method.driver(cfg, method, device, tokenizer, data, tracker, out)
    callbacks = [MlflowCallback(tracker)] if tracker is not None else None
    trainer = build_trainer(cfg, method, device, tokenizer, data, out, callbacks)
    if tracker is not None and "refcache/hit" in data.counts:
        tracker.log_metrics({"refcache/hit": data.counts["refcache/hit"]}, step=0)
    last = last_complete_checkpoint(out / "checkpoints")
    if last:
        log.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    model = trainer.model
    adapter_dir = out / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    final = write_summary(cfg, trainer, tracker, adapter_dir, out)
    if method.after_train is not None:
        for path in method.after_train(cfg, model, tokenizer, out):
            if tracker is not None:
                tracker.log_artifact(path)
    return model, final, trainer.state.global_step
