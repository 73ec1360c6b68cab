"""The console during training: one progress bar with loss, reward accuracy and tokens/s.

The Trainer's own ProgressCallback writes every log dict (about 15 quoted numbers) into the bar.
`TrainProgress` overrides only that hook: the bar shows three numbers as its postfix, and the full
dict goes to the logger `alignment.trainlog`, which conf/train.yaml routes to the run's log file
only (MLflow gets every number through the tracking callback anyway).
"""

from __future__ import annotations

import json
import logging

from transformers.trainer_callback import ProgressCallback

trainlog = logging.getLogger("alignment.trainlog")

# Trainer log key -> the label shown in the progress bar.
SHOWN = {"loss": "loss", "rewards/accuracy": "acc", "tokens_per_s": "tok/s"}


class TrainProgress(ProgressCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        trainlog.info("step %d %s", state.global_step, json.dumps(logs, default=str))
        shown = {
            label: f"{logs[key]:.4g}"
            for key, label in SHOWN.items()
            if isinstance(logs.get(key), int | float)
        }
        if self.training_bar is not None and shown:
            self.training_bar.set_postfix(shown, refresh=False)
