"""sync: send to MLflow what a run directory's journal still holds (after an outage that outlived
the run's bounded flush). Idempotent: what MLflow has acknowledged is never sent again, and a
record sent without an answer (inflight) is one that MLflow stores once however often it comes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alignment.tracking.journal import JOURNAL_FILE, Journal
from alignment.tracking.redaction import redact
from alignment.tracking.remote import resolve_uri
from alignment.tracking.sender import Sender
from alignment.tracking.tracker import close_dead_attempts

log = logging.getLogger(__name__)


def sync(
    run_dir: Path, uri: str | None = None, timeout: float = 300.0, retry_rejected: bool = False
) -> int:
    """Send the journal of `run_dir` to MLflow (its own URI unless `uri` is given), trying for at
    most `timeout` seconds. Returns the number of records not in MLflow afterwards (unsent plus
    rejected). Raises ValueError for a directory without a journal or a URI it cannot use, and
    RunDirInUse while the run's own process is still alive (it is sending them itself)."""
    if not (Path(run_dir) / JOURNAL_FILE).is_file():
        raise ValueError(f"{run_dir} has no tracking journal ({JOURNAL_FILE})")
    journal = Journal(Path(run_dir))
    close_dead_attempts(journal)
    uri = resolve_uri(uri or journal.meta("uri") or "")
    if not uri or "***" in uri:
        raise ValueError(
            f"{journal.path} keeps the tracking URI without its credentials ({uri or 'none'}); "
            "pass it with --uri (or set MLFLOW_TRACKING_USERNAME/PASSWORD)"
        )
    if retry_rejected:
        log.info("%d rejected records will be sent again", journal.retry_rejected())
    before = journal.unsent()
    if not before:
        counts = journal.counts()
        log.info(
            "nothing to send: MLflow run %s has all %d records (%d rejected)",
            journal.run_id,
            counts.get("sent", 0),
            counts.get("failed", 0),
        )
        return counts.get("failed", 0)
    sender = Sender(journal, uri)
    unsent = sender.drain(timeout)
    failed = journal.counts().get("failed", 0)
    log.info(
        "sent %d of %d records to MLflow run %s at %s; %d unsent%s, %d rejected",
        sender.sent,
        before,
        journal.run_id,
        redact(uri),
        unsent,
        f" ({sender.last_error})" if unsent and sender.last_error else "",
        failed,
    )
    return unsent + failed
