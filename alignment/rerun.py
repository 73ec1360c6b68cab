"""`python train.py rerun=<MLflow run id>`: train a logged run again, into a new run.

`expand_rerun` runs before Hydra: it reads the run's `.hydra/overrides.yaml` artifact and puts
those overrides on the command line in place of `rerun=<id>` (keeping `rerun=<id>` itself; an
override the user gives again replaces the original's, e.g. `tracking.uri`). Hydra then
composes the run's config from today's conf/ as for any command, so the rerun gets its own
output directory (the original's overrides plus `rerun=<id>`), resumes like any run when it is
killed, and its MLflow run is tagged `rerun_of=<id>` (alignment/runinfo.py).

`check_rerun` runs in the job and verifies instead of checking out: the run's `git_commit` and
`git_dirty` tags against this checkout, and the config composed now against the run's logged
params (a changed YAML default shows up there), with one warning line per difference. A
checkout is not switched behind the user's back, and an automatic worktree would not help:
this process has already imported the package from this checkout, and another checkout needs
its own install and resolves relative data paths differently. The warning prints the two
commands that rerun at the exact commit.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import yaml

from alignment.config import RunConfig
from alignment.config.cli import ConfigError, compose_tracking

log = logging.getLogger(__name__)
OVERRIDES_ARTIFACT = ".hydra/overrides.yaml"
# Keys that differ between a run and its rerun by design.
OWN_KEYS = ("output_dir", "rerun", "tracking.")


class RerunError(ConfigError):
    """rerun=<id> cannot be followed (unknown run, no logged overrides); one line."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    from alignment.tracking import resolve_uri

    return MlflowClient(tracking_uri=resolve_uri(uri))


def _get_run(client, run_id: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise RerunError(f"rerun={run_id}: no such MLflow run in {uri}") from None


def logged_overrides(run_id: str, uri: str) -> list[str]:
    """The task overrides the run was composed with (its `.hydra/overrides.yaml` artifact)."""
    client = _client(uri)
    _get_run(client, run_id, uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, OVERRIDES_ARTIFACT, tmp)
        except Exception:  # MLflow raises several types for a missing artifact
            raise RerunError(
                f"rerun={run_id}: the run has no {OVERRIDES_ARTIFACT} artifact (only train.py "
                "runs with tracking enabled can be rerun)"
            ) from None
        overrides = yaml.safe_load(Path(path).read_text()) or []
    return [str(o) for o in overrides]


def expand_rerun(argv: list[str]) -> list[str]:
    """argv with `rerun=<id>` preceded by the run's own overrides (unchanged without one)."""
    at = [i for i, arg in enumerate(argv) if arg.startswith("rerun=")]
    if not at:
        return argv
    run_id = argv[at[0]].split("=", 1)[1]
    if len(at) > 1 or not run_id or "," in run_id or "-m" in argv or "--multirun" in argv:
        raise RerunError("rerun= takes exactly one MLflow run id (and no sweep)")
    given = [a for a in argv[1:] if "=" in a and not a.startswith("-")]
    tracking = compose_tracking("train", given)
    mine = {_key(a) for a in given}
    original = [
        o for o in logged_overrides(run_id, tracking.uri) if _key(o) not in mine | {"rerun"}
    ]
    log.info("rerun of %s: its overrides %s", run_id, " ".join(original) or "(none)")
    return [*argv[: at[0]], *original, *argv[at[0] :]]


def code_warnings(tags: dict[str, str], sha: str, dirty: str) -> list[str]:
    """How the code running now may differ from the code that produced the run."""
    run_id, then = tags.get("rerun_of_id", "the run"), tags.get("git_commit", "unknown")
    found = []
    if then == "unknown" or sha == "unknown":
        found.append(f"the commit of {run_id} or of this checkout is unknown: the code may differ")
    elif then != sha:
        found.append(
            f"{run_id} was trained at commit {then[:12]}, this checkout is at {sha[:12]}: "
            f"changed code can change the numbers (exact rerun: git worktree add "
            f"../rerun-{then[:8]} {then}, then run this command there)"
        )
    if tags.get("git_dirty") == "true":
        found.append(f"{run_id} ran with uncommitted changes: its exact code is not recorded")
    if dirty == "true":
        found.append("this checkout has uncommitted changes: the rerun's code is not a commit")
    return found


def config_differences(logged: dict[str, str], now: dict[str, str]) -> list[str]:
    """Config keys whose logged param differs from the value composed now (own keys aside)."""
    keys = (set(logged) | set(now)) - {k for k in set(logged) | set(now) if k.startswith(OWN_KEYS)}
    return sorted(k for k in keys if logged.get(k) != now.get(k))


def check_rerun(cfg: RunConfig) -> None:
    """Warn (one line each) where the code or the config differ from the original run's."""
    from alignment.runinfo import REPO
    from alignment.tracking import flatten, git_state

    run = _get_run(_client(cfg.tracking.uri), cfg.rerun, cfg.tracking.uri)
    sha, dirty = git_state(REPO)
    for warning in code_warnings({**run.data.tags, "rerun_of_id": cfg.rerun}, sha, dirty):
        log.warning("rerun: %s", warning)
    changed = config_differences(run.data.params, flatten(dataclasses.asdict(cfg)))
    if changed:
        log.warning(
            "rerun: the config composed now differs from %s's in %s: the numbers may differ",
            cfg.rerun,
            ", ".join(changed),
        )
    log.info("rerun of %s (%s) into %s", cfg.rerun, run.info.run_name, cfg.output_dir)
