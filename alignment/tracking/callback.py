"""MlflowCallback: the Trainer's log lines as namespaced step metrics, plus the progress the
tracker needs to resume a run cleanly (where training starts, the step reached, its end)."""

from __future__ import annotations

from transformers import TrainerCallback

from alignment.tracking.tracker import Tracker


class MlflowCallback(TrainerCallback):
    """Sends every Trainer log line to MLflow as namespaced step metrics (train/..., eval/...).

    `train/train_runtime` covers every attempt of a resumed run: the Trainer counts only its own
    session, so the earlier attempts' training time is added.
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.tracker.begin_training(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.tracker.heartbeat(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.tracker.checkpointed(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.tracker.end_training(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {}
        for key, value in logs.items():
            if not isinstance(value, (int, float)):
                continue
            if key.startswith("eval_"):
                metrics["eval/" + key[len("eval_") :]] = value
            elif key == "learning_rate":
                metrics["train/lr"] = value
            elif key == "train_runtime":
                metrics["train/train_runtime"] = value + self.tracker.prior_train_seconds
            else:
                metrics["train/" + key] = value
        self.tracker.log_metrics(metrics, step=state.global_step)
