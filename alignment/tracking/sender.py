"""The sender: replays a journal into MLflow in journal order, with each point's original step
and timestamp, from a background thread (training) or in the foreground (`sync`).

Delivery is at least once: a batch is marked inflight, sent, then marked sent, so a crash in
between sends it again. That second send logs nothing twice, because MLflow's SQL store keys a
metric point on (key, timestamp, step, value) and skips an identical one, params may be set again
to the same value, and tags and artifacts overwrite themselves. A failed call is retried with
backoff (0.5 s doubling to 10 s; 1 s while the run is ending); MLflow's rejections (a changed
param, a missing file) are marked failed, counted and reported, never retried blindly.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from alignment.tracking.journal import Journal, Record
from alignment.tracking.redaction import redact
from alignment.tracking.remote import describe, find_or_create_run, is_rejection, make_client

log = logging.getLogger(__name__)

PAGE = 2000
LIMITS = {"metric": 1000, "param": 100, "tag": 100}  # MLflow's log_batch limits
BACKOFF_START_S, BACKOFF_CAP_S, ENDING_CAP_S = 0.5, 10.0, 1.0
TAG_ON_CONFLICT = "tag_on_conflict"


class Rejected(Exception):
    """A record that can never be sent as it stands (an artifact whose file is gone)."""


class RunMissing(Exception):
    """The server does not know the run (another server, a wiped store): the records stay
    unsent, to be replayed where the run lives (`sync --uri`), never marked as rejected."""


def batches(records: list[Record]) -> Iterator[list[Record]]:
    """Consecutive metric/param/tag records as log_batch groups within MLflow's limits (a param
    or tag key seen twice starts a new group: its later value must land later); every other
    record alone."""
    group: list[Record] = []
    counts = dict.fromkeys(LIMITS, 0)
    keys: set[tuple[str, str]] = set()
    for rec in records:
        fits = (
            rec.kind in LIMITS
            and counts[rec.kind] < LIMITS[rec.kind]
            and sum(counts.values()) < 1000
            and (rec.kind == "metric" or (rec.kind, rec.key) not in keys)
        )
        if group and not fits:
            yield group
            group, counts, keys = [], dict.fromkeys(LIMITS, 0), set()
        group.append(rec)
        if rec.kind not in LIMITS:
            yield group
            group, counts, keys = [], dict.fromkeys(LIMITS, 0), set()
            continue
        counts[rec.kind] += 1
        keys.add((rec.kind, rec.key))
    if group:
        yield group


class Sender:
    def __init__(self, journal: Journal, uri: str, hold_before: int | None = None) -> None:
        self.journal, self.uri = journal, uri
        self.hold_before = hold_before  # see Journal.pending
        self.last_error: str | None = None
        self.sent = self.rejected = 0
        self._client: MlflowClient | None = None
        self._wake, self._stop, self._kick = (threading.Event() for _ in range(3))
        self._ending = False
        self._outage_since: float | None = None
        self.outage_waited = 0.0  # seconds flush() has waited on an unanswering MLflow
        self._thread: threading.Thread | None = None

    # -- background mode ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mlflow-sender", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def release(self) -> None:
        """The current attempt has rewound (or will not): earlier attempts' points may go."""
        self.hold_before = None
        self._wake.set()

    def flush(self, timeout: float) -> int:
        """Wait for the journal to drain; returns the records still unsent. The wait ends after
        `timeout` s, and time spent waiting on an MLflow that does not answer counts against
        one `timeout` shared by every flush of the process: a run that flushes twice (summary,
        then end) against a dead server waits once."""
        self.release()
        self._ending = True
        self._kick.set()
        start = last = time.monotonic()
        while self.journal.unsent() and self._thread is not None and self._thread.is_alive():
            now = time.monotonic()
            if self._outage_since is not None:
                self.outage_waited += now - last
            last = now
            if now - start >= timeout or self.outage_waited >= timeout:
                break
            time.sleep(0.05)
        return self.journal.unsent()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)  # a call in progress cannot be interrupted

    def _loop(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = self.send_once()
            except Exception as err:
                self._failed(err)
                self._kick.wait(min(backoff, ENDING_CAP_S if self._ending else BACKOFF_CAP_S))
                self._kick.clear()
                backoff = min(backoff * 2, BACKOFF_CAP_S)
                continue
            backoff = BACKOFF_START_S
            if not busy:
                self._wake.wait(timeout=5.0)

    # -- foreground mode (`sync`) ------------------------------------------------------------
    def drain(self, timeout: float) -> int:
        """Send until nothing is left or `timeout` s have passed; returns the records unsent."""
        self.release()
        deadline, backoff = time.monotonic() + timeout, BACKOFF_START_S
        while True:
            try:
                if not self.send_once():
                    break
                backoff = BACKOFF_START_S
            except Exception as err:
                self._failed(err)
                if time.monotonic() + backoff > deadline:
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP_S)
        return self.journal.unsent()

    # -- one pass ----------------------------------------------------------------------------
    def send_once(self) -> bool:
        """Send one page of pending records. False when there was nothing to send."""
        if self._client is None:
            self._client = make_client(self.uri)
        run_id = self.journal.run_id or self._create_run()
        if run_id is None:
            return False
        records = self.journal.pending(PAGE, self.hold_before)
        for group in batches(records):
            self._send(run_id, group)
        self._recovered()
        return bool(records)

    def _create_run(self) -> str | None:
        rec = self.journal.run_record()
        if rec is None:
            return None
        body = json.loads(rec.text or "{}")
        run_id = find_or_create_run(
            self._client,
            self.uri,
            self.journal.journal_id,
            rec.key,
            body["run_name"],
            body["tags"],
            rec.ts,
        )
        self.journal.set_run_id(run_id)
        self.sent += 1
        log.info("MLflow run %s created (%s)", run_id, redact(self.uri))
        return run_id

    def _send(self, run_id: str, group: list[Record]) -> None:
        seqs = [r.seq for r in group]
        self.journal.mark(seqs, "inflight")
        try:
            self._call(run_id, group)
        except (MlflowException, Rejected) as err:
            if isinstance(err, MlflowException) and err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RunMissing(f"run {run_id} does not exist at {redact(self.uri)}") from err
            if not isinstance(err, Rejected) and not is_rejection(err):
                raise
            if len(group) > 1:  # bisect to the record MLflow objects to; send the others
                half = len(group) // 2
                self._send(run_id, group[:half])
                self._send(run_id, group[half:])
                return
            self._rejected(run_id, group[0], err)
            return
        self.journal.mark(seqs, "sent")
        self.sent += len(group)

    def _call(self, run_id: str, group: list[Record]) -> None:
        client, rec = self._client, group[0]
        if rec.kind in LIMITS:
            client.log_batch(
                run_id,
                metrics=[
                    Metric(r.key, float("nan") if r.num is None else r.num, r.ts, r.step or 0)
                    for r in group
                    if r.kind == "metric"
                ],
                params=[Param(r.key, r.text or "") for r in group if r.kind == "param"],
                tags=[RunTag(r.key, r.text or "") for r in group if r.kind == "tag"],
            )
        elif rec.kind == "artifact":
            path = (self.journal.run_dir / rec.key).resolve()
            if not path.exists():
                raise Rejected(f"{path} no longer exists")
            if path.is_dir():
                client.log_artifacts(run_id, str(path), rec.text)
            else:
                client.log_artifact(run_id, str(path), rec.text)
        elif rec.kind == "status" and rec.key == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        elif rec.kind == "status":
            client.set_terminated(run_id, status=rec.key, end_time=rec.ts)
        else:
            raise ValueError(f"unknown journal record kind {rec.kind!r} (seq {rec.seq})")

    def _rejected(self, run_id: str, rec: Record, err: Exception) -> None:
        if rec.kind == "param" and rec.flags == TAG_ON_CONFLICT:
            # Re-evaluating a run with other settings: params cannot change, tags can.
            self._client.set_tag(run_id, rec.key, rec.text or "")
            self.journal.mark([rec.seq], "sent", "stored as a tag: the param had another value")
            log.warning("param %s differs from the run's earlier value; stored as a tag", rec.key)
            return
        self.journal.mark([rec.seq], "failed", describe(err))
        self.rejected += 1
        if self.rejected <= 3:
            log.error("MLflow rejected %s %r: %s", rec.kind, rec.key, describe(err))

    def _failed(self, err: Exception) -> None:
        self.last_error = describe(err)
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "MLflow at %s does not answer (%s); training goes on, and its records wait in "
                "%s until it does",
                redact(self.uri),
                self.last_error,
                self.journal.path,
                exc_info=not isinstance(err, (MlflowException, OSError, RunMissing)),
            )

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.info(
                "MLflow at %s answers again after %.0f s; sending the records kept meanwhile",
                redact(self.uri),
                time.monotonic() - self._outage_since,
            )
        self._outage_since, self.last_error = None, None
