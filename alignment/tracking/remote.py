"""Talking to MLflow: the tracking URI, a client whose HTTP calls make one short attempt, which
errors are worth retrying, and finding or creating a journal's run exactly once.

MLflow's REST client retries a failed request MLFLOW_HTTP_REQUEST_MAX_RETRIES=7 times with
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=2 (about 4 minutes against a dead server) and waits up to
MLFLOW_HTTP_REQUEST_TIMEOUT=120 s for each answer. The sender has its own backoff and training
never waits on it, so the process makes one attempt of at most REQUEST_TIMEOUT_S instead
(long enough for a server that 50 writers keep busy; a dead one refuses at once). These
are environment variables read at each request (there is no per-client setting), so they hold
for the whole process; a value the user exported is kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from alignment.tracking.redaction import redact

REQUEST_TIMEOUT_S = 30
JOURNAL_TAG = "alignment.journal_id"
# MLflow judged the request itself (a bad value, a param that would change): sending it again
# gets the same answer. Anything else may pass later, so the record stays in the journal:
# refused connections, timeouts, 5xx, a locked sqlite file, and BAD_REQUEST, which the SQL store
# also returns for a database error, e.g. a UNIQUE race between two server processes when a
# timed-out request and its retry of the same params run at once.
_REJECTED = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "INVALID_STATE",
    "MALFORMED_REQUEST",
}


def resolve_uri(uri: str) -> str:
    """sqlite URIs with a relative path resolve against the launch directory, so every job of a
    sweep (whatever its cwd) writes to the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def make_client(uri: str) -> MlflowClient:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))
    return MlflowClient(tracking_uri=uri)


def is_rejection(err: BaseException) -> bool:
    return isinstance(err, MlflowException) and err.error_code in _REJECTED


def describe(err: BaseException) -> str:
    """One short line for a failed call (MLflow's own messages run to several hundred
    characters of URL and urllib3 internals), with credentials masked."""
    text = str(err)
    if not isinstance(err, MlflowException):
        text = f"{type(err).__name__}: {text}"
    for marker, short in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("database is locked", "database is locked"),
    ):
        if marker in text:
            return short
    cause = re.search(r"Caused by (\w+)\('([^']*)", text)  # urllib3's wrapped reason
    if cause:
        return redact(f"no connection ({cause[1]}: {cause[2]})")[:200]
    line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return redact(line)[:200]


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another job of the sweep
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def find_or_create_run(
    client: MlflowClient,
    uri: str,
    journal_id: str,
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    start_ms: int,
) -> str:
    """The run tagged with this journal's id, created if there is none. A sender killed between
    create_run and recording the id finds its run again instead of making a second one."""
    exp = experiment_id(client, experiment, uri)
    query = f"tags.`{JOURNAL_TAG}` = '{journal_id}'"
    found = client.search_runs([exp], query, run_view_type=ViewType.ALL, max_results=1)
    if found:
        return found[0].info.run_id
    tags = {**tags, JOURNAL_TAG: journal_id}
    return client.create_run(exp, start_time=start_ms, tags=tags, run_name=run_name).info.run_id
