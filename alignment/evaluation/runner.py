"""run_eval: the selected suites on a loaded model, logged to MLflow; evaluate: evaluate.py's body.

Logged into the run: metrics `eval/<suite>/<name>` (see suites.py), params `eval/<suite>/<key>`
(settings such as gamma, reducer, pooling, protocol, judge model and prompt hashes) plus
`eval/<suite>/version` (the `VERSION` of the suite's schema), and the files (CSV, PNGs, judge
prompts and raw judge outputs, eval_metrics.json) as artifacts under `eval/`. MLflow params cannot
change once set: re-evaluating a run with different settings records the new ones as tags instead
(warned).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from alignment.config import ModelConfig, RunConfig
from alignment.config.eval import suite_version
from alignment.config.evaluate import EvaluateConfig, model_config_from_yaml
from alignment.data.types import DataError
from alignment.evaluation import compare
from alignment.evaluation.suites import SUITES, EvalContext
from alignment.methods import get_method
from alignment.runinfo import run_tags
from alignment.tracking import RUN_ID_FILE, Tracker, flatten

if TYPE_CHECKING:
    from mlflow.entities import Run

logger = logging.getLogger(__name__)


def base_key(model: ModelConfig) -> str:
    """Identity of the base weights (for the answer caches of adapter-disabled generation)."""
    parts = (model.name, model.source, model.hub_id, model.revision, model.gguf_file)
    return "base:" + ":".join(str(p) for p in parts)


class SuiteFailure(RuntimeError):
    """One or more suites raised; the others' results were logged. `failed`: suite -> error."""

    def __init__(self, failed: dict[str, str]) -> None:
        self.failed = failed
        detail = "; ".join(f"{suite}: {error}" for suite, error in failed.items())
        super().__init__(f"evaluation suite failed ({len(failed)} of the selected): {detail}")


def run_eval(
    cfg: RunConfig,
    model,
    tokenizer,
    tracker: Tracker | None,
    *,
    weights_key: str,
    has_adapter: bool = True,
    step: int = 0,
) -> dict[str, float]:
    """Run every suite selected in `cfg.eval`; log each one's results to `tracker`'s run (when
    given) as soon as it finishes, so a later failure loses nothing.

    Args:
        weights_key: identifies the evaluated weights for the on-disk answer caches (e.g.
            "run:<id>"); the same key must always mean the same weights.
        has_adapter: False for the base model itself (the helpfulness judge is then skipped:
            the baseline ties with itself by definition).
    Returns:
        {"eval/<suite>/<name>": value}.
    Raises:
        SuiteFailure: after the remaining suites ran, when any suite raised. The run carries the
            tags `eval/<suite>/status` (ok | failed), `eval/<suite>/error` and `eval_status`.
    """
    out_dir = Path(cfg.output_dir) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = EvalContext(cfg, model, tokenizer, out_dir, weights_key, base_key(cfg.model), has_adapter)
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    failed: dict[str, str] = {}
    summary = out_dir / "eval_metrics.json"
    for suite in cfg.eval.suites():
        logger.info("evaluation suite %s (version %s)", suite, suite_version(suite))
        try:
            result = SUITES.get(suite)(ctx)
        except Exception as err:  # recorded; the other suites still run; re-raised below
            failed[suite] = _record_failure(tracker, suite, err)
            continue
        new = {f"eval/{suite}/{k}": v for k, v in result.metrics.items()}
        new_params = {f"eval/{suite}/{k}": v for k, v in result.params.items()}
        new_params[f"eval/{suite}/version"] = suite_version(suite)
        metrics |= new
        params |= new_params
        _write_summary(summary, metrics, params, failed)
        if tracker is not None:
            _log(tracker, suite, new, new_params, [*result.files, summary], step)
        logger.info("\n".join(f"  {k:<48} {v:.4f}" for k, v in sorted(new.items())))
    _write_summary(summary, metrics, params, failed)
    if tracker is not None:
        status = "failed: " + ",".join(failed) if failed else "ok"
        tracker.set_tags({"eval_status": status})
        tracker.log_artifact(summary, "eval")
    if failed:
        raise SuiteFailure(failed)
    return metrics


def _record_failure(tracker: Tracker | None, suite: str, err: Exception) -> str:
    """Log a suite's error (one line for bad input or an unreachable hub, with the traceback
    otherwise) and tag the run; returns the one-line message."""
    message = _one_line(err)
    bad_input = isinstance(err, DataError | FileNotFoundError | ConnectionError)
    logger.error("suite %s failed: %s", suite, message, exc_info=not bad_input)
    if tracker is not None:
        tracker.set_tags({f"eval/{suite}/status": "failed", f"eval/{suite}/error": message[:4000]})
    return message


def _write_summary(path: Path, metrics, params, failed) -> None:
    record = {"metrics": metrics, "params": params, "failed": failed}
    path.write_text(json.dumps(record, indent=2, default=str))


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _log(tracker: Tracker, suite: str, metrics, params, files, step: int) -> None:
    """One suite's results into the run. NaN values (e.g. an axiom with one label) are not
    logged as numbers; their keys are named in a warning and in the `eval/<suite>/nan` tag."""
    nan = sorted(k for k, v in metrics.items() if math.isnan(v))
    finite = {k: v for k, v in metrics.items() if k not in nan}
    tracker.log_metrics(finite, step=step, repeatable=True)
    if nan:
        logger.warning("suite %s: %d metrics are NaN (not logged): %s", suite, len(nan), nan)
    # A re-evaluation with different settings cannot change params: those become tags.
    tracker.log_params(params, tags_on_conflict=True)
    status = {f"eval/{suite}/status": "ok", f"eval/{suite}/nan": ",".join(nan)[:4000] or "none"}
    if _has_tag(tracker, f"eval/{suite}/error"):  # a re-evaluation that succeeds clears it
        status[f"eval/{suite}/error"] = "none (an earlier evaluation failed)"
    tracker.set_tags(status)
    for path in files:
        tracker.log_artifact(path, "eval")


def _has_tag(tracker: Tracker, key: str) -> bool:
    if tracker.run_id is None:  # the run is not created yet: nothing earlier to clear
        return False
    try:
        return key in tracker.client.get_run(tracker.run_id).data.tags
    except Exception:  # an unreachable server: the journal holds what this run logs
        return False


# ---------------------------------------------------------------- evaluate.py

# The tags that name a training run; a baseline scored for it is tagged like it.
IDENTITY_TAGS = ("model", "method", "optimizer", "dataset", "seed", "tag")


class TargetError(ValueError):
    """evaluate.py's target (run=, adapter=) cannot be evaluated; raised before any work."""


@dataclass(frozen=True)
class Target:
    """What evaluate.py evaluates: model config, adapter dir (None = base model), the MLflow run
    to log into (None = create one), the weights' cache identity, the directory for the eval
    files and the training run's identity tags (IDENTITY_TAGS; empty when there is none)."""

    model: ModelConfig
    adapter: str | None
    run_id: str | None
    weights_key: str
    out_dir: Path
    tags: dict[str, str]


def _stored_model_config(tracker: Tracker, run_id: str) -> ModelConfig:
    """The training run's model config: resolved_config.yaml, else Hydra's .hydra/config.yaml."""
    names = {a.path for a in tracker.client.list_artifacts(run_id)}
    name = "resolved_config.yaml" if "resolved_config.yaml" in names else ".hydra/config.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.client.download_artifacts(run_id, name, tmp)
        return model_config_from_yaml(Path(path).read_text())


def _find_run(tracker: Tracker, run_id: str):
    try:
        return tracker.client.get_run(run_id)
    except MlflowException as err:
        msg = str(err.message).splitlines()[0]
        raise TargetError(f"run={run_id}: no such MLflow run in {tracker.uri} ({msg})") from None


def run_adapter(
    tracker: Tracker, run_id: str, cache_dir: str
) -> tuple[ModelConfig, Path, Path | None, Run]:
    """A training run's model config, a local directory holding its adapter (the run's own
    output_dir/adapter when it is on this machine, else the logged `adapter` artifact, fetched
    once into the cache), its output directory (None if unknown) and the run. Also used for
    `model.init_adapter=run:<id>` (alignment/init_adapter.py). Raises TargetError (one line)."""
    run = _find_run(tracker, run_id)
    try:
        model = _stored_model_config(tracker, run_id)
    except (MlflowException, OSError, ValueError) as err:
        raise TargetError(f"run={run_id}: no readable model config ({_one_line(err)})") from None
    train_dir = Path(run.data.params["output_dir"]) if "output_dir" in run.data.params else None
    if train_dir is not None and (train_dir / "adapter").is_dir():
        return model, train_dir / "adapter", train_dir, run
    # Another machine trained it: fetch the logged adapter once.
    dst = Path(cache_dir).expanduser() / "eval" / "adapters" / run_id
    if not (dst / "adapter").is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        try:
            tracker.client.download_artifacts(run_id, "adapter", str(dst))
        except (MlflowException, OSError) as err:
            raise TargetError(f"run={run_id}: no adapter to load ({_one_line(err)})") from None
    return model, dst / "adapter", train_dir, run


def _run_target(cfg: EvaluateConfig, tracker: Tracker) -> Target:
    """A training run: its model config and adapter (run_adapter); the eval files go to the
    run's own directory when it is on this machine (where eval_after_train puts them)."""
    model, adapter, train_dir, run = run_adapter(tracker, cfg.run, cfg.cache_dir)
    out = train_dir if train_dir is not None and train_dir.is_dir() else Path(cfg.output_dir)
    tags = {k: run.data.tags[k] for k in IDENTITY_TAGS if k in run.data.tags}
    return Target(model, str(adapter), cfg.run, f"run:{cfg.run}", out, tags)


def _adapter_target(cfg: EvaluateConfig, tracker: Tracker) -> Target:
    """A saved adapter; logged into its training run when the directory sits next to that run's
    `mlflow_run_id` file and the run is in this tracking store, else into a new run."""
    adapter = Path(cfg.adapter).expanduser().resolve()
    if not (adapter / "adapter_config.json").is_file():
        what = "no such directory" if not adapter.is_dir() else "no adapter_config.json in it"
        raise TargetError(f"adapter={cfg.adapter}: {what} (expected a saved LoRA adapter)")
    id_file = adapter.parent / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    tags: dict[str, str] = {}
    if run_id is not None:
        try:
            run_tags = tracker.client.get_run(run_id).data.tags
            tags = {k: run_tags[k] for k in IDENTITY_TAGS if k in run_tags}
        except MlflowException:
            where = f"{id_file} names run {run_id}, which {tracker.uri} does not hold"
            logger.warning("%s: the adapter is logged into a new run", where)
            run_id = None
    weights = adapter / "adapter_model.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
    out = adapter.parent if run_id is not None else Path(cfg.output_dir)
    key = f"adapter:{adapter}:{stamp}"
    return Target(cfg.model, str(adapter), run_id, key, out, tags)


def resolve_target(cfg: EvaluateConfig, tracker: Tracker) -> Target:
    """The target of evaluate.py, checked before anything is loaded or logged (TargetError)."""
    if cfg.run:
        return _run_target(cfg, tracker)
    if cfg.adapter:
        return _adapter_target(cfg, tracker)
    return Target(cfg.model, None, None, base_key(cfg.model), Path(cfg.output_dir), {})


def _new_run_tags(cfg: EvaluateConfig, target: Target) -> dict[str, str]:
    tags = run_tags(cfg) | {"eval_only": "true"}
    if target.adapter is not None:
        tags["adapter"] = target.adapter
        if not get_method(cfg.method).trains:  # an adapter is never the untrained base model
            tags["method"] = "adapter"
    return tags


def evaluate(cfg: EvaluateConfig) -> dict[str, float]:
    """Resolve the target, load it, then run the suites into the right MLflow run. Bad targets
    fail before a run is created or a model loaded; a failed suite ends a new run FAILED."""
    from alignment.models import load_base, load_policy, load_tokenizer, pick_device

    target = resolve_target(cfg, Tracker(cfg.tracking, Path(cfg.output_dir)))
    cfg = dataclasses.replace(cfg, model=target.model, output_dir=str(target.out_dir))
    names = target.tags or {"model": cfg.model.name, "method": cfg.method.name}
    what = target.run_id or target.adapter or "the base model"
    described = ", ".join(f"{k}={v}" for k, v in names.items())
    logger.info("evaluating %s (%s); files in %s", what, described, target.out_dir)
    device = pick_device(cfg.train.device)
    tokenizer = load_tokenizer(target.model, cfg.cache_dir)
    if target.adapter is None:
        model = load_base(target.model, cfg.cache_dir, device)
    else:
        model = load_policy(target.model, cfg.cache_dir, device, target.adapter, trainable=False)
    tracker = Tracker(cfg.tracking, target.out_dir)
    if target.run_id is not None:
        tracker.attach(target.run_id)  # log into the training run
    else:
        tags = _new_run_tags(cfg, target)
        name = cfg.tracking.run_name or f"{tags['method']}-{cfg.model.name}-eval"
        tracker.start(flatten(dataclasses.asdict(cfg)), tags, name)
    try:
        has_adapter = target.adapter is not None
        metrics = run_eval(
            cfg, model, tokenizer, tracker, weights_key=target.weights_key, has_adapter=has_adapter
        )
    except BaseException as err:
        if target.run_id is None:
            if isinstance(err, SuiteFailure):
                tracker.set_tags({"failure": str(err)[:4000]})
            tracker.end("FAILED")
        raise
    if target.run_id is None:
        tracker.end("FINISHED")
    logger.info("logged to MLflow run %s (%s)", tracker.run_id, tracker.uri)
    if cfg.compare_baseline and target.adapter is not None:
        base = compare.find_baseline(tracker, cfg, list(metrics)) or compare.evaluate_baseline(
            cfg, model, tokenizer, run_eval, base_key(target.model), like=target.tags
        )
        logger.info("trained vs base model:\n%s", compare.side_by_side(metrics, base))
    return metrics
