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

from mlflow.entities import Param
from mlflow.exceptions import MlflowException

from alignment.config import MethodConfig, ModelConfig, RunConfig
from alignment.config.eval import suite_version
from alignment.config.evaluate import (
    EvaluateConfig,
    method_config_from_yaml,
    model_config_from_yaml,
)
from alignment.evaluation import compare
from alignment.evaluation.suites import SUITES, EvalContext
from alignment.runinfo import run_name, run_tags
from alignment.tracking import RUN_ID_FILE, Tracker, flatten

logger = logging.getLogger(__name__)


def base_key(model: ModelConfig) -> str:
    """Identity of the base weights (for the answer caches of adapter-disabled generation)."""
    parts = (model.name, model.source, model.hub_id, model.revision, model.gguf_file)
    return "base:" + ":".join(str(p) for p in parts)


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
    """Run every suite selected in `cfg.eval`; log to `tracker`'s run (when given).

    Args:
        weights_key: identifies the evaluated weights for the on-disk answer caches (e.g.
            "run:<id>"); the same key must always mean the same weights.
        has_adapter: False for the base model itself (the helpfulness judge is then skipped:
            the baseline ties with itself by definition).
    Returns:
        {"eval/<suite>/<name>": value}.
    """
    out_dir = Path(cfg.output_dir) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = EvalContext(cfg, model, tokenizer, out_dir, weights_key, base_key(cfg.model), has_adapter)
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    files: list[Path] = []
    for suite in cfg.eval.suites():
        version = suite_version(suite)
        logger.info("evaluation suite %s (version %s)", suite, version)
        result = SUITES.get(suite)(ctx)
        metrics |= {f"eval/{suite}/{k}": v for k, v in result.metrics.items()}
        params |= {f"eval/{suite}/{k}": v for k, v in result.params.items()}
        params[f"eval/{suite}/version"] = version
        files += result.files
    summary = out_dir / "eval_metrics.json"
    summary.write_text(json.dumps({"metrics": metrics, "params": params}, indent=2, default=str))
    files.append(summary)
    if tracker is not None:
        _log(tracker, metrics, params, files, step)
    logger.info("\n".join(f"  {k:<48} {v:.4f}" for k, v in sorted(metrics.items()) if "/" in k))
    return metrics


def _log(tracker: Tracker, metrics, params, files, step: int) -> None:
    finite = {k: v for k, v in metrics.items() if not math.isnan(v)}
    tracker.log_metrics(finite, step=step)
    try:
        tracker.client.log_batch(tracker.run_id, params=[Param(k, v) for k, v in params.items()])
    except MlflowException as err:  # a re-evaluation with different settings
        logger.warning("eval params differ from the run's earlier ones; stored as tags: %s", err)
        tracker.set_tags(params)
    for path in files:
        tracker.log_artifact(path, "eval")


# ---------------------------------------------------------------- evaluate.py


@dataclass(frozen=True)
class Target:
    """What evaluate.py evaluates: model config, adapter dir (None = base model), the MLflow run
    to log into (None = create one), the weights' cache identity and the method that trained the
    weights (its build_model hook rebuilds the model from the adapter dir)."""

    model: ModelConfig
    adapter: str | None
    run_id: str | None
    weights_key: str
    method: MethodConfig


def _stored_configs(tracker: Tracker, run_id: str) -> tuple[ModelConfig, MethodConfig]:
    """The training run's model and method configs: resolved_config.yaml, else Hydra's
    .hydra/config.yaml."""
    names = {a.path for a in tracker.client.list_artifacts(run_id)}
    name = "resolved_config.yaml" if "resolved_config.yaml" in names else ".hydra/config.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tracker.client.download_artifacts(run_id, name, tmp)).read_text()
        return model_config_from_yaml(text), method_config_from_yaml(text)


def resolve_target(cfg: EvaluateConfig, tracker: Tracker) -> Target:
    if cfg.run:
        run = tracker.client.get_run(cfg.run)
        model, method = _stored_configs(tracker, cfg.run)
        local = Path(run.data.params.get("output_dir", "")) / "adapter"
        if local.is_dir():
            adapter = str(local)
        else:  # another machine trained it: fetch the logged adapter once
            dst = Path(cfg.cache_dir).expanduser() / "eval" / "adapters" / cfg.run
            if not (dst / "adapter").is_dir():
                dst.mkdir(parents=True, exist_ok=True)
                tracker.client.download_artifacts(cfg.run, "adapter", str(dst))
            adapter = str(dst / "adapter")
        return Target(model, adapter, cfg.run, f"run:{cfg.run}", method)
    if cfg.adapter:
        adapter = Path(cfg.adapter).resolve()
        id_file = adapter.parent / RUN_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        weights = adapter / "adapter_model.safetensors"
        stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
        return Target(cfg.model, str(adapter), run_id, f"adapter:{adapter}:{stamp}", cfg.method)
    return Target(cfg.model, None, None, base_key(cfg.model), cfg.method)


def load_target(cfg: EvaluateConfig, target: Target, device):
    """The base model, or the trained one: LoRA on the base, or what the training method's
    build_model hook rebuilds from the saved directory (a MAC circuit, AlignX's experts)."""
    from alignment.methods import get_method
    from alignment.models import load_base, load_policy

    if target.adapter is None:
        return load_base(target.model, cfg.cache_dir, device)
    method = get_method(target.method)
    if method.build_model is not None:
        trained = dataclasses.replace(cfg, model=target.model, method=target.method)
        return method.build_model(trained, device, Path(target.adapter), False)
    return load_policy(target.model, cfg.cache_dir, device, target.adapter, trainable=False)


def evaluate(cfg: EvaluateConfig) -> dict[str, float]:
    """Load the target (base model + adapter), run the suites, log into the right MLflow run."""
    from alignment.models import load_tokenizer, pick_device

    tracker = Tracker(cfg.tracking, Path(cfg.output_dir))
    target = resolve_target(cfg, tracker)
    cfg = dataclasses.replace(cfg, model=target.model)
    if target.run_id is not None:
        tracker.run_id = target.run_id  # attach: log into the training run
    else:
        tags = run_tags(cfg) | {"eval_only": "true"}
        if target.adapter:
            tags["adapter"] = target.adapter
        tracker.start(flatten(dataclasses.asdict(cfg)), tags, run_name(cfg, "eval"))
    device = pick_device(cfg.train.device)
    tokenizer = load_tokenizer(target.model, cfg.cache_dir)
    model = load_target(cfg, target, device)
    try:
        metrics = run_eval(
            cfg,
            model,
            tokenizer,
            tracker,
            weights_key=target.weights_key,
            has_adapter=target.adapter is not None,
        )
    except BaseException:
        if target.run_id is None:
            tracker.end("FAILED")
        raise
    if target.run_id is None:
        tracker.end("FINISHED")
    logger.info("logged to MLflow run %s (%s)", tracker.run_id, tracker.uri)
    if cfg.compare_baseline and target.adapter is not None:
        base = compare.find_baseline(tracker, cfg, list(metrics)) or compare.evaluate_baseline(
            cfg, model, tokenizer, run_eval, base_key(target.model)
        )
        logger.info("trained vs base model:\n%s", compare.side_by_side(metrics, base))
    return metrics
