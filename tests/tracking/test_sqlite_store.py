"""A new sqlite store appears whole or not at all (alignment.tracking.remote.ensure_sqlite_store):
a job killed while MLflow builds the tables, or two jobs creating the same file at once, must not
leave a half-built file that every later client fails on ("table ... already exists")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from alignment.tracking.remote import make_client
from tests.conftest import REPO

CREATE = "import sys; from alignment.tracking.remote import make_client; make_client(sys.argv[1])"


def test_a_job_killed_while_the_tables_are_built_leaves_no_store(tmp_path):
    db = tmp_path / "m.db"
    proc = subprocess.Popen([sys.executable, "-c", CREATE, f"sqlite:///{db}"], cwd=REPO)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".m.db.*.creating")):  # building in its private file
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not db.exists()  # in place, this would be a half-built file
    client = make_client(f"sqlite:///{db}")  # the next job builds it from scratch
    assert client.create_experiment("after") and db.is_file()


def test_jobs_creating_one_store_at_once_all_use_it(tmp_path):
    db = tmp_path / "m.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", CREATE, f"sqlite:///{db}"], cwd=REPO)
        for _ in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert make_client(f"sqlite:///{db}").search_experiments()[0].name == "Default"
    assert not list(tmp_path.glob(".m.db.*"))  # no scratch file left behind
