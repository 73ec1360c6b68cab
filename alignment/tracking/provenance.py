"""Who ran what: the git state of the code, and the identity of the process that owns a run
directory (pid, host, process start), so a rerun can tell a dead attempt from a live one."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


def git_state(repo: Path) -> tuple[str, str]:
    """(commit sha, "true"/"false" dirty) of the code that ran, or ("unknown", "unknown")."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha, str(bool(dirty)).lower()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", "unknown"


@dataclass(frozen=True)
class Owner:
    """A process: pid and host name, plus its start mark (boot id and start time in clock ticks)
    so that a recycled pid is not mistaken for the process that wrote the record."""

    pid: int
    host: str
    started: str


def _start_mark(pid: int) -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 22 (starttime); split after the ")" that closes the command name, which may
        # itself contain spaces or parentheses.
        return f"{boot}:{stat[stat.rindex(')') + 2 :].split()[19]}"
    except (OSError, ValueError, IndexError):
        return ""


def this_process() -> Owner:
    return Owner(os.getpid(), socket.gethostname(), _start_mark(os.getpid()))


def is_alive(owner: Owner) -> bool | None:
    """True/False for a process of this host; None when it ran on another host (a requeued
    Slurm task lands on any node: there is no way to ask that node from here)."""
    if owner.host != socket.gethostname():
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    return not owner.started or _start_mark(owner.pid) == owner.started
