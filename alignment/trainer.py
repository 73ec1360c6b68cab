"""Glue over transformers' Trainer: plugs in a registered method's loss and our optimizer.

The subclass overrides five narrow hooks only: `compute_loss` (policy log-probs once, reference
log-probs only if the method needs them, then the method's loss), `create_optimizer` (our
builder, GRIT included), `log` (adds the method's diagnostics), `get_batch_samples` (counts
the response tokens of the whole gradient-accumulation window, so that token-averaged losses give
the same gradient whatever the micro-batch size) and `training_step` (hands the loss and, once
the window's gradients are complete, the parameters to the non-finite guard, alignment/guards.py;
a skipped window's diagnostics are dropped with it). Checkpointing, resume,
gradient accumulation, schedulers and length-grouped sampling are the Trainer's own.
Diagnostics are summed on the device and read back once per logging step, so a training step
never waits on a host-device synchronisation for logging.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from alignment import distributed
from alignment.config import MethodConfig, OptimizerConfig
from alignment.forward import forward_logps
from alignment.guards import NonFiniteGuard
from alignment.losses import token_kl_full_vocab
from alignment.methods import Method, PolicyBatch
from alignment.models.reference import reference_mode
from alignment.optim import Preconditioner, build_optimizer
from alignment.risk.regularizers import Regularizer


class AlignmentTrainer(Trainer):
    def __init__(
        self,
        *args,
        method: Method,
        method_cfg: MethodConfig,
        optimizer_cfg: OptimizerConfig,
        completion_only_logits: bool = True,
        guard: NonFiniteGuard | None = None,
        regularizer: Regularizer | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.method, self.method_cfg, self.optimizer_cfg = method, method_cfg, optimizer_cfg
        self.regularizer = regularizer
        self.completion_only = completion_only_logits
        self.preconditioner: Preconditioner | None = None
        self.guard = guard if guard is not None else NonFiniteGuard()
        self._trainable: list[torch.nn.Parameter] | None = None
        # Our loss is already a per-batch mean: let the Trainer divide by grad_accum itself.
        self.model_accepts_loss_kwargs = False
        # Training diagnostics collect per accumulation window and join "train" once the guard
        # accepts the window.
        modes = ("train", "eval", "window")
        self._sums: dict[str, dict[str, torch.Tensor]] = {m: {} for m in modes}
        self._counts: dict[str, dict[str, int]] = {m: defaultdict(int) for m in modes}
        self._last_log_time = time.perf_counter()
        self.reference_forwards = 0
        # Response tokens per micro-batch, averaged over the current accumulation window.
        self._window_tokens: dict[str, torch.Tensor] = {}

    # -- hooks -------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer, self.preconditioner = build_optimizer(self.optimizer_cfg, self.model)
        return self.optimizer

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._window_tokens = _window_token_means(batches, self.method.needs_pairs, device)
        return batches, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        method, cfg = self.method, self.method_cfg
        if self.preconditioner is not None and model.training:
            self.preconditioner.set_token_mask(self._stats_mask(inputs))
        keep_logits = method.needs_reference_logits(cfg)
        logps, n_tokens, logits = forward_logps(model, inputs, self.completion_only, keep_logits)
        batch = self._policy_batch(inputs, logps, n_tokens)
        if method.needs_reference(cfg):
            self._add_reference(model, inputs, batch, logits)
        out = method.loss(cfg, batch)
        loss = out.loss
        mode = "window" if model.training else "eval"
        self._accumulate(mode, out.metrics, inputs)
        if self.preconditioner is not None and model.training:
            self.preconditioner.observe_loss(loss.detach())
            reg = self.preconditioner.regularization_loss()
            if reg is not None:
                loss = loss + reg
                self._accumulate(mode, {"grit/regularizer": reg.detach()}, None)
        if self.regularizer is not None and model.training:  # e.g. AlignGuard: reg/* terms
            reg, terms = self.regularizer()
            loss = loss + reg
            self._accumulate(mode, terms, None)
        return (loss, {}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.guard.observe_loss(loss)
        if self.accelerator.sync_gradients:  # the window's last backward: gradients complete
            if self._trainable is None:
                self._trainable = [p for p in self.model.parameters() if p.requires_grad]
            step = self.state.global_step + 1
            accepted = self.guard.check_window(
                step, self._trainable, self.preconditioner is not None
            )
            self._end_window(accepted)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        sums, counts = self._sums[mode], self._counts[mode]
        if sums:
            names = list(sums)
            totals = torch.stack([sums[n] for n in names])
            if distributed.is_distributed():  # every rank logs at the same step: reduce first
                names, totals = distributed.sum_logged(sums, counts)
            values = dict(zip(names, totals.tolist(), strict=True))
            tokens, steps = values.pop("tokens", 0.0), values.pop("steps", 0.0)
            for name, value in values.items():  # the stack above is the one sync per log step
                logs[prefix + name] = value / max(counts[name], 1)
            if mode == "train":
                now = time.perf_counter()
                elapsed = max(now - self._last_log_time, 1e-9)
                logs["tokens_per_s"] = tokens / elapsed
                logs["step_time"] = elapsed / max(steps, 1e-9)
                self._last_log_time = now
            sums.clear()
            counts.clear()
        if mode == "train" and self.preconditioner is not None:
            logs.update(self.preconditioner.metrics())
        if mode == "train":
            logs.update(self.guard.log_fields())
        logs["reference_forwards"] = float(self.reference_forwards)
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler) and self.args.world_size > 1:
            # Mega-batches of the global batch, not of one rank's share: N ranks then split the
            # very index sequence one rank with an N times larger batch would draw.
            sampler.batch_size *= self.args.world_size
        return sampler

    # -- helpers -----------------------------------------------------------------------------
    def _policy_batch(
        self, inputs: dict, logps: torch.Tensor, n_tokens: torch.Tensor
    ) -> PolicyBatch:
        b = inputs["index"].shape[0]
        batch = PolicyBatch(policy_chosen_logps=logps[:b], chosen_tokens=n_tokens[:b])
        if self.method.needs_pairs:
            batch.policy_rejected_logps, batch.rejected_tokens = logps[b:], n_tokens[b:]
            batch.h_w, batch.h_l = inputs["h_w"], inputs["h_l"]
        if self.model.training and self._window_tokens:
            batch.chosen_tokens_total = self._window_tokens["chosen"]
            batch.response_tokens_total = self._window_tokens["response"]
        else:  # evaluation: this batch's own counts
            batch.chosen_tokens_total = n_tokens[:b].sum()
            batch.response_tokens_total = n_tokens.sum()
        return batch

    def _add_reference(self, model, inputs: dict, batch: PolicyBatch, logits) -> None:
        """Reference log-probs: from the shared cache when the batch carries them, else a forward
        of the same model as pi_ref (adapters disabled, or the frozen init adapter active:
        alignment/models/reference.py; no second copy of the weights)."""
        b = inputs["index"].shape[0]
        if "ref_chosen_logps" in inputs and logits is None:
            batch.ref_chosen_logps = inputs["ref_chosen_logps"]
            batch.ref_rejected_logps = inputs["ref_rejected_logps"]
            return
        unwrapped = self.accelerator.unwrap_model(model)
        with torch.no_grad(), reference_mode(unwrapped):
            ref_logps, _, ref_logits = forward_logps(
                model, inputs, self.completion_only, keep_logits=logits is not None
            )
        self.reference_forwards += 1
        batch.ref_chosen_logps, batch.ref_rejected_logps = ref_logps[:b], ref_logps[b:]
        if logits is not None:
            batch.token_kl_sum = token_kl_full_vocab(logits, ref_logits, inputs["labels"], "sum")

    def _stats_mask(self, inputs: dict) -> torch.Tensor | None:
        kind = self.preconditioner.stats_mask
        if kind == "attention":
            return inputs["attention_mask"].bool()
        if kind == "response":
            return inputs["labels"] != -100
        return None

    def _end_window(self, accepted: bool) -> None:
        window, window_counts = self._sums["window"], self._counts["window"]
        if accepted:
            sums, counts = self._sums["train"], self._counts["train"]
            for name, total in window.items():
                sums[name] = sums[name] + total if name in sums else total
                counts[name] += window_counts[name]
        window.clear()
        window_counts.clear()

    def _accumulate(self, mode: str, metrics: dict[str, torch.Tensor], inputs: dict | None) -> None:
        sums, counts = self._sums[mode], self._counts[mode]
        if inputs is not None:
            mask = inputs["attention_mask"]
            metrics = {
                **metrics,
                "tokens": mask.sum(),
                "padding_ratio": 1.0 - mask.float().mean(),
                "steps": mask.new_ones((), dtype=torch.float32)
                / self.args.gradient_accumulation_steps,
            }
        for name, value in metrics.items():
            value = value.detach().float()
            total = value.sum()
            sums[name] = sums[name] + total if name in sums else total
            counts[name] += value.numel()


def _window_token_means(batches: list[dict], pairs: bool, device) -> dict[str, torch.Tensor]:
    """Chosen and all response tokens (targets != -100 after the one-position shift) summed over
    the accumulation window (and over ranks) and divided by its micro-batch count (times the
    world size). The Trainer divides each micro-batch's loss by that count and DDP averages over
    ranks, so dividing token sums by these means gives the exact token mean of the global batch.
    Stays on the device: no host sync."""
    if not batches:
        return {}
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in batches:
        mask = batch["labels"][:, 1:] != -100
        b = batch["index"].shape[0]
        chosen = mask[:b].sum()
        counts += torch.stack([chosen, mask.sum() if pairs else chosen]).to(counts)
    n = len(batches)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(counts)
        n *= torch.distributed.get_world_size()
    counts = (counts / n).float()
    return {"chosen": counts[0], "response": counts[1]}
