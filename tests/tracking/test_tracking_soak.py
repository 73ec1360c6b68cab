"""Soak: 50 processes log to one `mlflow server` (scripts/mlflow-server.sh, its default
settings) at once. Every point arrives exactly once and no request meets a locked database."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tracking.conftest import ROOT, Server, free_port

pytestmark = pytest.mark.slow
PROCESSES, STEPS, KEYS = 50, 100, 10
WORKERS = Path(__file__).with_name("soak_worker.py")


def test_fifty_writers_lose_nothing_and_never_lock(tmp_path):
    server = Server(tmp_path / "study", free_port(), workers=2)
    server.start()
    try:
        t0 = time.monotonic()
        cmd = [sys.executable, str(WORKERS), server.uri, str(tmp_path)]
        proc = subprocess.run(
            [*cmd, str(PROCESSES), str(STEPS), str(KEYS)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's `alignment`
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.monotonic() - t0
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    # MLflow itself prints a "View run" line per ended run; the workers' lines are JSON.
    ends = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e.get("error") for e in ends] == [None] * PROCESSES
    assert [e["unsent"] for e in ends] == [0] * PROCESSES
    db = sqlite3.connect(tmp_path / "study" / "mlflow.db")
    rows = db.execute(
        "SELECT run_uuid, COUNT(*), COUNT(DISTINCT key || '@' || step) FROM metrics"
        " GROUP BY run_uuid"
    ).fetchall()
    per_run = {run: (n, distinct) for run, n, distinct in rows}
    assert {e["run_id"] for e in ends} == set(per_run)  # 50 distinct runs
    assert all(v == (STEPS * KEYS, STEPS * KEYS) for v in per_run.values()), per_run
    log = server.log_text()
    assert log.count("database is locked") + proc.stderr.count("database is locked") == 0
    answers = re.findall(r'"POST /api/2.0/mlflow/runs/log-batch HTTP/1.1" (\d+)', log)
    failed = sum(code != "200" for code in answers)
    retried = proc.stderr.count("does not answer")
    print(
        f"soak: {PROCESSES} processes x {STEPS * KEYS} points in {wall:.0f} s; 0 lost, "
        f"0 duplicated, 0 locked; {len(answers)} log-batch calls, {failed} not 200; "
        f"{retried} processes retried a failed call"
    )
