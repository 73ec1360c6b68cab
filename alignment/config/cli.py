"""From the command line to a checked config: one-line errors, appended keys, secrets first.

`to_config` is the one conversion: it rejects keys appended with `+` to a schema node (Hydra's
`+` writes past the struct flag, and `OmegaConf.to_object` would then keep the stray key as an
attribute nobody reads) and `???` values left unset, then the secret checks of
alignment/config/secrets.py, then every schema's `__post_init__` checks. Any problem becomes a
`ConfigError` whose message is one line naming the key.

`CheckBeforeRun` (a Hydra callback in conf/train.yaml and conf/evaluate.yaml) runs `to_config`
in `on_run_start`: after composition but before Hydra creates the output directory, writes
`.hydra/*.yaml` and opens the job's log file, so a rejected config leaves nothing behind (a
sweep's cells are checked in their jobs; their command-line values for secrets up front). `cli`
wraps an entry point so that Hydra's own composition errors (a misspelt key, a wrong type, an
unknown option) also end in one `error: ...` line instead of a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from hydra.errors import MissingConfigException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from alignment.config.secrets import credential_problem, walk_strings


class ConfigError(ValueError):
    """A bad config: one line naming the key."""


def appended_keys(node: DictConfig, path: str = "") -> Iterator[str]:
    """One message per key that is not a field of its node's schema (interpolations unresolved).

    Free-form dict fields (tracking.tags, dataset.columns) have no schema and take any key."""
    schema = OmegaConf.get_type(node)
    names = (
        {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    )
    for key in node:
        if key == "hydra" and not path:
            continue
        if names is not None and key not in names:
            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f"; did you mean {path}{close[0]}?" if close else ""
            yield f"{path}{key} is not a key of {schema.__name__}{hint}"
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            yield from appended_keys(child, f"{path}{key}.")


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def one_line(err: BaseException) -> str:
    """A config or composition error as one line (Hydra's message, its cause, the key)."""
    if isinstance(err, MissingConfigException) and err.options:
        options = ", ".join(o for o in err.options if not o.startswith("base_"))
        return f"{_first_line(err)}; options: {options}"
    parts = [_first_line(err)]
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        parts.append(_first_line(cause))
    key = getattr(cause if cause is not None else err, "full_key", None)
    if key and key not in " ".join(parts):
        parts.append(f"(key {key})")
    return " ".join(parts)


def to_config(dcfg: DictConfig) -> Any:
    """The composed config as its schema's object (RunConfig, EvaluateConfig), checked."""
    for message in appended_keys(dcfg):
        raise ConfigError(f"{message} (keys added with + must exist in the schema)")
    # to_object would quietly replace a ??? value by the field's default (often None).
    for key in sorted(OmegaConf.missing_keys(dcfg)):
        raise ConfigError(f"{key} is required (??? in the config): set {key}=...")
    for key, value in walk_strings(OmegaConf.to_container(dcfg, resolve=False)):
        if problem := credential_problem(key, value):
            raise ConfigError(problem)
    try:
        return OmegaConf.to_object(dcfg)
    except (ValueError, TypeError, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None


def check_overrides(overrides: list[str]) -> None:
    """Reject command-line values that look like credentials, before Hydra sees them."""
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and (problem := credential_problem(key, value)):
            raise ConfigError(problem)


class CheckBeforeRun(Callback):
    """Every check of `to_config`, before Hydra writes anything for the run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]  # as Hydra's run_job does for the task's config
            # Hydra fills runtime.output_dir later, in run_job; no schema check reads it.
            task.output_dir = "<set by hydra>"
        _exit_on_error(lambda: to_config(task))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = list(OmegaConf.to_container(config.hydra.overrides.task))
        _exit_on_error(lambda: check_overrides(overrides))


def _exit_on_error(check: Callable[[], Any]) -> None:
    # Hydra turns a callback's exceptions into warnings and carries on; SystemExit stops it.
    try:
        check()
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None


def cli(main: Callable[[], Any], prepare: Callable[[list[str]], list[str]] | None = None) -> None:
    """Run a `@hydra.main` entry point; config errors (ours and Hydra's) end in one line.

    `prepare` may rewrite the command line first (train.py's rerun=<id>). Other exceptions keep
    their traceback; HYDRA_FULL_ERROR=1 set by the user keeps Hydra's full reports too."""
    user_full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        check_overrides(sys.argv[1:])
        if prepare is not None:
            sys.argv = prepare(sys.argv)
        # Hydra then raises its composition errors to us instead of printing a report.
        os.environ["HYDRA_FULL_ERROR"] = "1"
        main()
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    except Exception as err:
        from hydra.errors import HydraException

        if user_full_error or not isinstance(err, HydraException | OmegaConfBaseException):
            raise
        raise SystemExit(f"error: {one_line(err)}") from None


def compose_tracking(config_name: str, overrides: list[str]) -> Any:
    """The `tracking` section (a TrackingConfig) that `config_name` composes to with the
    `tracking...` overrides among `overrides` (rerun=<id> reads the run from there)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[2] / "conf"
    keep = [o for o in overrides if o.lstrip("+~").startswith("tracking")]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        dcfg = compose(config_name, overrides=keep)
    return OmegaConf.to_object(dcfg.tracking)
