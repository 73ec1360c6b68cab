"""`python -m alignment.tracking sync <run dir> [--uri URI] [--timeout S]`: send a run's unsent
tracking records to MLflow. Exit status 0 when MLflow has every record, 1 when some are still
unsent or were rejected, 2 for a directory it cannot sync."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignment.tracking.sync import sync
from alignment.tracking.tracker import RunDirInUse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alignment.tracking")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("sync", help="send a run directory's unsent records to MLflow")
    cmd.add_argument("run_dir", type=Path, help="the run's output directory")
    cmd.add_argument("--uri", help="tracking URI (default: the one the run logged to)")
    cmd.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds (300)"
    )
    cmd.add_argument(
        "--retry-rejected", action="store_true", help="send records MLflow rejected again"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        left = sync(args.run_dir, args.uri, args.timeout, args.retry_rejected)
    except (ValueError, RunDirInUse) as err:
        logging.getLogger("alignment.tracking").error("error: %s", err)
        return 2
    return 0 if left == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
