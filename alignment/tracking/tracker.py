"""Tracker: an MLflow run bound to an output directory, written through the journal.

Every call appends to the run directory's journal and returns; the sender thread delivers. A run
that MLflow has not seen yet (the server is late or down) exists only in the journal, and its id
file `mlflow_run_id` appears when the sender creates it. A rerun in the same directory resumes
the same run: the earlier attempt, if no process of it is alive, is marked KILLED with the step
it reached, and its points after the checkpoint this attempt restarts from are replaced (see
Journal.rewind), so each (key, step) reaches MLflow once.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from alignment.tracking.journal import RUN_ID_FILE, Journal, now_ms
from alignment.tracking.provenance import is_alive, this_process
from alignment.tracking.redaction import redact
from alignment.tracking.remote import experiment_id, make_client, resolve_uri
from alignment.tracking.sender import TAG_ON_CONFLICT, Sender

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from alignment.config import TrackingConfig

log = logging.getLogger(__name__)


class RunDirInUse(RuntimeError):
    """Another live process is logging from the same run directory."""


def close_dead_attempts(journal: Journal) -> None:
    """Attempts that never ended and whose process is gone: end them, and end the MLflow run
    they owned as KILLED at the step they reached. Raises RunDirInUse for a live one."""
    started = journal.run_id is not None or journal.run_record() is not None
    for a in journal.attempts():
        if a.ended:
            continue
        alive = is_alive(a.owner)
        if alive:
            raise RunDirInUse(
                f"{journal.run_dir} is in use by pid {a.owner.pid} on {a.owner.host} (attempt "
                f"{a.n}, started {time.ctime(a.begun)}); wait for it to end or stop it"
            )
        step = a.last_step or 0
        journal.update_attempt(a.n, ended="KILLED")
        if a.mode != "own" or not started:
            continue
        journal.add(a.n, "status", [("KILLED", None)], ts=int(a.last_seen * 1000))
        journal.add(a.n, "tag", [("killed_at_step", str(step))])
        where = "" if alive is False else f" (it ran on {a.owner.host}; assumed requeued)"
        log.warning(
            "attempt %d (pid %d) ended without closing its MLflow run%s: marked KILLED at step %d",
            a.n,
            a.owner.pid,
            where,
            step,
        )


class Tracker:
    """An MLflow run bound to an output directory. Writes never wait on MLflow."""

    def __init__(self, cfg: TrackingConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.uri = resolve_uri(cfg.uri)
        self.resumed = False
        self.journal: Journal | None = None
        self.sender: Sender | None = None
        self.attempt = 0
        self.prior_train_seconds = 0.0
        self._client: MlflowClient | None = None
        self._step = 0
        self._dups = [0, 0]
        self._mode = ""

    @property
    def client(self) -> MlflowClient:
        """A client for reads (evaluation looks runs up); every write goes through the journal."""
        if self._client is None:
            self._client = make_client(self.uri)
        return self._client

    def experiment_id(self) -> str:
        """The experiment's id, created if needed (artifacts next to a sqlite store), at once:
        for callers that need it now, such as a sweep's parent run."""
        return experiment_id(self.client, self.cfg.experiment, self.uri)

    @property
    def run_id(self) -> str | None:
        """The MLflow run id, or None while MLflow has not answered yet."""
        return self.journal.run_id if self.journal is not None else None

    # -- opening -----------------------------------------------------------------------------
    def _open(self, mode: str) -> Journal:
        if self.journal is not None:
            raise RuntimeError(f"the tracker of {self.run_dir} is already started")
        journal = Journal(self.run_dir)
        journal.set_meta("uri", redact(self.uri))  # the latest, for `sync` (a server may move)
        close_dead_attempts(journal)
        self.attempt, self._mode = journal.begin_attempt(this_process(), mode), mode
        # Earlier attempts' points wait until this one says where it resumes (Journal.pending).
        hold = self.attempt if self.attempt > 1 and mode == "own" else None
        self.sender = Sender(journal, self.uri, hold_before=hold)
        self.journal = journal
        atexit.register(self._at_exit)
        return journal

    def start(self, params: dict[str, str], tags: dict[str, str], run_name: str) -> str | None:
        """Open (or, from a run directory that has one, resume) the run. Returns its id, or
        None while MLflow has not answered (the sender creates it when it does)."""
        journal = self._open("own")
        id_file = self.run_dir / RUN_ID_FILE
        if journal.run_id is None and journal.run_record() is None and id_file.is_file():
            journal.set_run_id(id_file.read_text().strip())  # a run from before the journal
        if journal.run_id is not None or journal.run_record() is not None:
            self.resumed = True
            log.info("resuming MLflow run %s", journal.run_id or "(not created yet)")
            journal.add(self.attempt, "status", [("RUNNING", None)])
        else:
            all_tags = {k: redact(str(v)) for k, v in {**tags, **self.cfg.tags}.items()}
            # Set by the sweep's parent-run callback (alignment/config/sweep.py) before fan-out.
            parent = os.environ.get("ALIGNMENT_PARENT_RUN_ID")
            sweep = os.environ.get("ALIGNMENT_SWEEP_ID")
            if parent and "mlflow.parentRunId" not in all_tags:  # a stacked stage keeps its own
                all_tags["mlflow.parentRunId"] = parent
            if sweep:
                all_tags["sweep_id"] = sweep
            journal.add_run(self.attempt, self.cfg.experiment, redact(run_name), all_tags)
            journal.add(self.attempt, "param", [(k, redact(v)) for k, v in params.items()])
        journal.add(self.attempt, "tag", [("attempts", str(self.attempt))])
        self.sender.start()
        return self.run_id

    def attach(self, run_id: str) -> None:
        """Log into an existing run (evaluate.py into a training run); its status is not ours."""
        journal = self._open("attach")
        if journal.run_id not in (None, run_id):
            raise ValueError(
                f"{journal.path} belongs to MLflow run {journal.run_id}, not {run_id}; "
                "use another output directory"
            )
        if journal.run_id is None:
            journal.set_run_id(run_id)
        self.sender.start()

    # -- writes ------------------------------------------------------------------------------
    def _journal(self) -> Journal:
        if self.journal is None:
            raise RuntimeError("Tracker.start() or Tracker.attach() comes first")
        return self.journal

    def log_metrics(self, metrics: dict[str, float], step: int, repeatable: bool = False) -> None:
        """Training points are logged once per (key, step), whatever the attempt; `repeatable`
        (an evaluation) keeps each attempt's values, so evaluating a run again records them."""
        values = {k: float(v) for k, v in metrics.items()}
        gen = self.attempt if repeatable else 0
        journal = self._journal()
        dups, differ = journal.add_metrics(self.attempt, values, int(step), self._step, gen)
        self._dups[0] += dups
        self._dups[1] += differ
        self.sender.notify()

    def log_params(self, params: dict[str, str], tags_on_conflict: bool = False) -> None:
        """Params; with `tags_on_conflict`, one that already has another value in the run is
        stored as a tag instead (a re-evaluation with other settings)."""
        items = [(k, redact(str(v))) for k, v in params.items()]
        flags = TAG_ON_CONFLICT if tags_on_conflict else None
        self._journal().add(self.attempt, "param", items, flags=flags, step_reached=self._step)
        self.sender.notify()

    def set_tags(self, tags: dict[str, str]) -> None:
        items = [(k, redact(str(v))) for k, v in tags.items()]
        self._journal().add(self.attempt, "tag", items, step_reached=self._step)
        self.sender.notify()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Journals the path (relative to the run directory); the file is read when sent."""
        rel = redact(os.path.relpath(Path(path).resolve(), self.run_dir.resolve()))
        items = [(rel, artifact_path)]
        self._journal().add(self.attempt, "artifact", items, step_reached=self._step)
        self.sender.notify()

    # -- training progress (MlflowCallback) ----------------------------------------------------
    def begin_training(self, step: int) -> None:
        """Training starts at `step` (the checkpoint resumed, or 0)."""
        journal = self._journal()
        dropped = journal.rewind(self.attempt, step)
        self.prior_train_seconds = journal.prior_train_seconds(self.attempt)
        journal.update_attempt(self.attempt, train_begin=time.time(), last_step=step)
        self._step = step
        self.sender.release()
        if dropped:
            log.info(
                "resuming at step %d: %d unsent points logged after it by the killed attempt "
                "are replaced by this one's",
                step,
                dropped,
            )

    def heartbeat(self, step: int) -> None:
        """The step reached (kept in memory; written with the next record)."""
        self._step = step

    def checkpointed(self, step: int) -> None:
        self._step = step
        self._journal().touch(self.attempt, step)

    def end_training(self, step: int) -> None:
        self._step = step
        self._journal().update_attempt(self.attempt, train_end=time.time(), last_step=step)

    # -- ending ------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> int:
        """Wait (at most `timeout`, default tracking.flush_timeout_s) for MLflow to have every
        record; returns how many it still lacks."""
        if self.sender is None:
            return 0
        return self.sender.flush(self.cfg.flush_timeout_s if timeout is None else timeout)

    def end(self, status: str = "FINISHED") -> int:
        """Close the run with `status`, flush with a bounded wait, and say in one line what is
        not in MLflow yet and how to send it. Returns the number of records unsent."""
        if self.journal is None:
            return 0
        self.journal.add(self.attempt, "status", [(status, None)], step_reached=self._step)
        self.journal.update_attempt(self.attempt, ended=status)
        return self._finish()

    def _finish(self) -> int:
        unsent = self.flush()
        self.sender.stop()
        atexit.unregister(self._at_exit)
        self._report(unsent)
        return unsent

    def _at_exit(self) -> None:
        """A process that attached (evaluate.py) or died in Python without end(): flush."""
        if self.sender is not None and self.sender.running:
            if self._mode == "attach":
                self.journal.update_attempt(self.attempt, ended="detached")
            self._finish()

    def _report(self, unsent: int) -> None:
        journal = self.journal
        if self._dups[0]:
            log.info(
                "%d points repeated a (key, step) the run already had; the first of each is "
                "kept (%d had another value)",
                *self._dups,
            )
        failed = journal.counts().get("failed", 0)
        if failed:
            log.error(
                "tracking: MLflow rejected %d records; see the `note` column in %s",
                failed,
                journal.path,
            )
        if unsent:
            log.warning(
                "tracking: %d records are not in MLflow yet (%s); they are kept in %s. "
                "Send them later: python -m alignment.tracking sync %s",
                unsent,
                self.sender.last_error or f"still sending after {self.cfg.flush_timeout_s:g} s",
                journal.path,
                self.run_dir,
            )
        elif not failed:
            log.info("tracking: every record is in MLflow run %s", journal.run_id)


__all__ = ["Tracker", "RunDirInUse", "close_dead_attempts", "now_ms"]
