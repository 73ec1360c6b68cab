"""MLflow tracking that training never waits on, resumable, with secrets kept out.

Every metric, param, tag, artifact and status change goes first to a journal in the run
directory (journal.py); a background sender (sender.py) replays it into the MLflow run with the
original steps and timestamps, whenever MLflow answers. `python -m alignment.tracking sync
<run dir>` sends what a finished process left unsent. The run id is stored in the run directory
(`mlflow_run_id`), so a requeued or re-launched job logs into the same run (tracker.py).
"""

from __future__ import annotations

from typing import Any

from alignment.tracking.journal import JOURNAL_FILE, RUN_ID_FILE, Journal
from alignment.tracking.provenance import git_state
from alignment.tracking.redaction import flatten, redact
from alignment.tracking.remote import resolve_uri
from alignment.tracking.tracker import RunDirInUse, Tracker

__all__ = [
    "JOURNAL_FILE",
    "RUN_ID_FILE",
    "Journal",
    "MlflowCallback",
    "RunDirInUse",
    "Tracker",
    "flatten",
    "git_state",
    "redact",
    "resolve_uri",
]


def __getattr__(name: str) -> Any:
    # The callback imports transformers (seconds); `sync` and the soak's 50 logging processes
    # need only the journal and the sender, so it is imported on first use.
    if name == "MlflowCallback":
        from alignment.tracking.callback import MlflowCallback

        return MlflowCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
