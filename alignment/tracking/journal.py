"""The tracking journal: every metric, param, tag, artifact and run-status change of a run, written
to `<run dir>/tracking_journal.db` before anything is sent to MLflow.

Why sqlite rather than fsync'd JSON lines: a commit is atomic (a kill -9 mid-write leaves the
last record either whole or absent, never torn), the sender marks what MLflow acknowledged in the
same file instead of a second cursor file, a resume drops the unsent points after its checkpoint
with one UPDATE, a partial unique index guarantees at most one live point per (key, step), and
memory stays flat however long the run. The rollback journal (TRUNCATE) with synchronous=FULL
fsyncs each commit and, unlike WAL, works on network file systems (run directories on a cluster
usually live on NFS or Lustre). Secrets never get here: the tracker redacts every string first.

Record states: pending (not sent), inflight (sent, no answer recorded: it may be in MLflow, so it
is sent again, never replaced), sent, dropped (a duplicate (key, step), or an unsent point after
the checkpoint a resumed attempt restarts from) and failed (rejected by MLflow; `note` says why).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alignment.tracking.provenance import Owner

JOURNAL_FILE = "tracking_journal.db"
RUN_ID_FILE = "mlflow_run_id"
_LIVE = "('pending', 'inflight', 'sent')"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    n INTEGER PRIMARY KEY, pid INTEGER, host TEXT, proc_start TEXT, mode TEXT, begun REAL,
    train_begin REAL, train_end REAL, last_seen REAL, last_step INTEGER, ended TEXT);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,   -- run | metric | param | tag | artifact | status
    key TEXT NOT NULL,
    num REAL,             -- a metric's value; NULL stands for NaN (sqlite stores NaN as NULL)
    text TEXT,
    step INTEGER,
    ts INTEGER NOT NULL,  -- milliseconds since the epoch, as MLflow stores them
    flags TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    note TEXT,
    gen INTEGER NOT NULL DEFAULT 0);  -- 0: a training point; n: evaluation attempt n's point
CREATE UNIQUE INDEX IF NOT EXISTS one_point ON records (key, step, gen)
    WHERE kind = 'metric' AND state IN {_LIVE};
CREATE INDEX IF NOT EXISTS by_state ON records (state, seq);
"""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Record:
    seq: int
    attempt: int
    kind: str
    key: str
    num: float | None
    text: str | None
    step: int | None
    ts: int
    flags: str | None


@dataclass(frozen=True)
class Attempt:
    """One process's go at the run: `mode` is "own" (it started or resumed the run and owns its
    status) or "attach" (evaluate.py logging into a training run)."""

    n: int
    owner: Owner
    mode: str
    begun: float
    train_begin: float | None
    train_end: float | None
    last_seen: float
    last_step: int | None
    ended: str | None


class Journal:
    """The journal file of one run directory. Thread-safe: one connection behind a lock (the
    training thread appends, the sender thread marks what was sent)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JOURNAL_FILE
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=TRUNCATE")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('journal_id', ?)", (uuid.uuid4().hex,)
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- meta --------------------------------------------------------------------------------
    def meta(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    @property
    def journal_id(self) -> str:
        return self.meta("journal_id") or ""

    @property
    def run_id(self) -> str | None:
        return self.meta("run_id")

    def set_run_id(self, run_id: str) -> None:
        """Bind the journal to its MLflow run (created, found or attached) and write the run id
        file beside it, atomically, so a reader never sees half an id."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('run_id', ?)", (run_id,))
            db.execute("UPDATE records SET state = 'sent' WHERE kind = 'run'")
        tmp = self.run_dir / f".{RUN_ID_FILE}.{os.getpid()}"
        tmp.write_text(run_id)
        os.replace(tmp, self.run_dir / RUN_ID_FILE)

    # -- attempts ----------------------------------------------------------------------------
    def begin_attempt(self, owner: Owner, mode: str) -> int:
        t = time.time()
        with self._tx() as db:
            n = db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM attempts").fetchone()[0]
            db.execute(
                "INSERT INTO attempts (n, pid, host, proc_start, mode, begun, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (n, owner.pid, owner.host, owner.started, mode, t, t),
            )
        return n

    def attempts(self) -> list[Attempt]:
        with self._lock:
            rows = self._db.execute(
                "SELECT n, pid, host, proc_start, mode, begun, train_begin, train_end, last_seen,"
                " last_step, ended FROM attempts ORDER BY n"
            ).fetchall()
        return [Attempt(r[0], Owner(r[1], r[2], r[3]), *r[4:]) for r in rows]

    def update_attempt(self, n: int, **fields: float | int | str) -> None:
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE attempts SET {names} WHERE n = ?", (*fields.values(), n))

    def prior_train_seconds(self, n: int) -> float:
        """Training time of the attempts before `n`: from their train begin to their train end,
        or, for one that was killed, to the last record it wrote."""
        with self._lock:
            row = self._db.execute(
                "SELECT SUM(COALESCE(train_end, last_seen) - train_begin) FROM attempts"
                " WHERE n < ? AND train_begin IS NOT NULL",
                (n,),
            ).fetchone()
        return max(row[0] or 0.0, 0.0)

    @staticmethod
    def _touch(db: sqlite3.Connection, attempt: int, step: int | None) -> None:
        db.execute(
            "UPDATE attempts SET last_seen = ?, last_step = MAX(COALESCE(last_step, 0), ?)"
            " WHERE n = ?",
            (time.time(), step or 0, attempt),
        )

    def touch(self, attempt: int, step: int | None) -> None:
        with self._tx() as db:
            self._touch(db, attempt, step)

    # -- records -----------------------------------------------------------------------------
    def add(
        self,
        attempt: int,
        kind: str,
        items: list[tuple[str, str | None]],
        *,
        ts: int | None = None,
        flags: str | None = None,
        step_reached: int | None = None,
    ) -> None:
        """Append (key, text) records of one kind (run, param, tag, artifact, status)."""
        ts = now_ms() if ts is None else ts
        with self._tx() as db:
            db.executemany(
                "INSERT INTO records (attempt, kind, key, text, ts, flags)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(attempt, kind, key, text, ts, flags) for key, text in items],
            )
            self._touch(db, attempt, step_reached)

    def add_run(self, attempt: int, experiment: str, run_name: str, tags: dict[str, str]) -> None:
        body = json.dumps({"run_name": run_name, "tags": tags})
        self.add(attempt, "run", [(experiment, body)])

    def add_metrics(
        self,
        attempt: int,
        metrics: dict[str, float],
        step: int,
        step_reached: int | None = None,
        gen: int = 0,
    ) -> tuple[int, int]:
        """Append one point per key at `step`. A (key, step) that already has a live point of
        the same `gen` keeps it: the new one is stored as dropped. Training points share gen 0,
        so a resumed attempt never logs a step twice; an evaluation passes its attempt number,
        so evaluating a run again adds its new values (the latest is the run's value). Returns
        (duplicates, duplicates whose value differs from the kept one)."""
        ts, dups, differ = now_ms(), 0, 0
        with self._tx() as db:
            for key, value in metrics.items():
                num = None if math.isnan(value) else value
                row = (attempt, "metric", key, num, step, ts, gen)
                cur = db.execute(
                    "INSERT OR IGNORE INTO records (attempt, kind, key, num, step, ts, gen)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                if cur.rowcount == 1:
                    continue
                (old,) = db.execute(
                    f"SELECT num FROM records WHERE kind = 'metric' AND key = ? AND step = ?"
                    f" AND gen = ? AND state IN {_LIVE}",
                    (key, step, gen),
                ).fetchone()
                db.execute(
                    "INSERT INTO records (attempt, kind, key, num, step, ts, gen, state, note)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'dropped', 'duplicate (key, step)')",
                    row,
                )
                dups += 1
                differ += old != num
            self._touch(db, attempt, max(step, step_reached or 0))
        return dups, differ

    def rewind(self, attempt: int, step: int) -> int:
        """Drop the points that earlier attempts logged after `step` (the checkpoint this attempt
        resumes from) and that never left the journal: this attempt logs those steps again.
        Points already sent (or in flight) stay; their re-logged twins are dropped instead."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE records SET state = 'dropped', note = ? WHERE kind = 'metric'"
                " AND attempt < ? AND step > ? AND state = 'pending'",
                (f"after checkpoint step {step}, logged again by attempt {attempt}", attempt, step),
            )
        return cur.rowcount

    def run_record(self) -> Record | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLS} FROM records WHERE kind = 'run' ORDER BY seq LIMIT 1"
            ).fetchone()
        return Record(*row) if row else None

    def pending(self, limit: int, hold_before: int | None = None) -> list[Record]:
        """Unsent records in journal order. With `hold_before`, step > 0 points of earlier
        attempts wait until the current attempt has said which checkpoint it resumes from."""
        held = " AND NOT (kind = 'metric' AND step > 0 AND attempt < ?)" if hold_before else ""
        args = (hold_before, limit) if hold_before else (limit,)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLS} FROM records WHERE state IN ('pending', 'inflight')"
                f" AND kind != 'run'{held} ORDER BY seq LIMIT ?",
                args,
            ).fetchall()
        return [Record(*r) for r in rows]

    def mark(self, seqs: list[int], state: str, note: str | None = None) -> None:
        with self._tx() as db:
            for i in range(0, len(seqs), 500):
                chunk = seqs[i : i + 500]
                marks = ",".join("?" * len(chunk))
                db.execute(
                    "UPDATE records SET state = ?, note = COALESCE(?, note)"
                    f" WHERE seq IN ({marks})",
                    (state, note, *chunk),
                )

    def retry_rejected(self) -> int:
        with self._tx() as db:
            cur = db.execute("UPDATE records SET state = 'pending' WHERE state = 'failed'")
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM records GROUP BY state").fetchall()
        return dict(rows)

    def unsent(self) -> int:
        counts = self.counts()
        return counts.get("pending", 0) + counts.get("inflight", 0)

    def points(self, states: tuple[str, ...] = ("sent",)) -> list[tuple[str, int, float | None]]:
        """(key, step, value) of the metric points in the given states (tests and audits)."""
        marks = ",".join("?" * len(states))
        with self._lock:
            return self._db.execute(
                f"SELECT key, step, num FROM records WHERE kind = 'metric' AND state IN ({marks})"
                " ORDER BY seq",
                states,
            ).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


_COLS = "seq, attempt, kind, key, num, text, step, ts, flags"
