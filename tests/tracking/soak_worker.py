"""The soak test's writers: one parent imports the package once and forks N processes (copy on
write: 50 fresh interpreters would need ~15 GB), each logging STEPS steps of KEYS metrics
through its own Tracker (journal, sender thread, HTTP client) into one `mlflow server`.
Prints one JSON line per process: {"run_id", "unsent", "error"}.

    python tests/tracking/soak_worker.py URI ROOT N STEPS KEYS
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from alignment.config.run import TrackingConfig
from alignment.tracking import Tracker


def write(uri: str, run_dir: Path, steps: int, keys: int, pace: float = 0.2) -> dict:
    cfg = TrackingConfig(uri=uri, experiment="soak", flush_timeout_s=600)
    tracker = Tracker(cfg, run_dir)
    tracker.start({"worker": run_dir.name}, {"kind": "soak"}, run_dir.name)
    for step in range(1, steps + 1):
        tracker.log_metrics({f"m{k}": step * 1000 + k for k in range(keys)}, step=step)
        time.sleep(pace)
    unsent = tracker.end()
    return {"run_id": tracker.run_id, "unsent": unsent}


def main(uri: str, root: str, n: int, steps: int, keys: int) -> int:
    children = {}
    for i in range(n):
        run_dir = Path(root) / f"w{i:02d}"
        run_dir.mkdir(parents=True)
        pid = os.fork()
        if pid == 0:  # the child never returns into this loop
            try:
                result = write(uri, run_dir, steps, keys)
            except BaseException:
                result = {"error": traceback.format_exc()}
            finally:
                (run_dir / "soak.json").write_text(json.dumps(result))
                os._exit(0)
        children[pid] = run_dir
    for pid, run_dir in children.items():
        os.waitpid(pid, 0)
        print((run_dir / "soak.json").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    raise SystemExit(main(a[0], a[1], int(a[2]), int(a[3]), int(a[4])))
