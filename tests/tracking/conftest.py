"""Fixtures for the tracking tests: a real `mlflow server` started the way the project starts one
(scripts/mlflow-server.sh), which a test may kill and start again on the same port and store."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_SERVER = ROOT / "scripts" / "mlflow-server.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One study directory (mlflow.db, mlartifacts/) served on a fixed port."""

    def __init__(self, study: Path, port: int, workers: int = 1) -> None:
        self.study, self.port, self.workers = study, port, workers
        self.uri = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "MLFLOW_SERVER_PORT": str(self.port),
            "MLFLOW_SERVER_WORKERS": str(self.workers),
        }
        out = subprocess.run(
            ["bash", str(MLFLOW_SERVER), "start", str(self.study)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        assert re.search(rf"^MLFLOW_TRACKING_URI={re.escape(self.uri)}$", out.stdout, re.M)

    def kill(self) -> None:
        """SIGKILL to the server's whole process group: no goodbye to its clients."""
        pid = int((self.study / "mlflow-server.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        while True:  # the port is free once the group is gone
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(["bash", str(MLFLOW_SERVER), "stop", str(self.study)], timeout=60)

    def log_text(self) -> str:
        path = self.study / "mlflow-server.log"
        return path.read_text(errors="replace") if path.is_file() else ""


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[Server]:
    """A started server on a free port; stopped at the end whatever the test did to it."""
    server = Server(tmp_path / "study", free_port())
    server.start()
    yield server
    server.stop()


def journal_points(run_dir: Path) -> list[tuple[str, int, int, float | None]]:
    """(key, step, timestamp, value) of every live metric point in a run's journal: what the
    run logged, once per (key, step)."""
    db = sqlite3.connect(run_dir / "tracking_journal.db")
    try:
        return db.execute(
            "SELECT key, step, ts, num FROM records WHERE kind = 'metric'"
            " AND state IN ('pending', 'inflight', 'sent') ORDER BY seq"
        ).fetchall()
    finally:
        db.close()


def mlflow_points(client, run_id: str) -> list[tuple[str, int, int]]:
    """(key, step, timestamp) of every metric point MLflow holds for the run, history included."""
    points = []
    for key in client.get_run(run_id).data.metrics:
        points += [(key, m.step, m.timestamp) for m in client.get_metric_history(run_id, key)]
    return points
