"""`model.init_adapter`: which adapter a run starts from, and that adapter's identity.

`resolve_init_adapter` runs first in a run (before data or model loading): `run:<id>` becomes
that training run's adapter directory (through MLflow, as evaluate.py finds a run's adapter),
and any adapter is checked against the run's LoRA shape. The resolved config carries the
absolute directory; the MLflow run records what was asked for (tag `init_adapter`) and the
adapter's fingerprint (tag `init_adapter_sha256`). The fingerprint (a hash of the weights and
the adapter config, not of the path) also keys the reference log-prob cache
(alignment/refcache.py): pi_ref is the init adapter's policy, so two stages of a chain never
share a cache entry, and a copied adapter reuses its original's.
How the adapter becomes both the starting point and pi_ref: alignment/models/reference.py.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

from alignment.config import ModelConfig, RunConfig
from alignment.config.cli import ConfigError
from alignment.config.model import RUN_PREFIX

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# adapter_config.json keys that do not change the function the adapter computes.
NOT_IDENTITY = ("base_model_name_or_path", "revision", "inference_mode", "peft_version")


class InitAdapterError(ConfigError):
    """model.init_adapter cannot be used (unknown run, no adapter, another shape); one line."""


def resolve_init_adapter(cfg: RunConfig) -> RunConfig:
    """`cfg` with model.init_adapter as an absolute adapter directory (unchanged without one)."""
    spec = cfg.model.init_adapter
    if spec is None:
        return cfg
    key = f"model.init_adapter={spec}"
    if spec.startswith(RUN_PREFIX):
        path = _from_run(cfg, spec[len(RUN_PREFIX) :], key)
    else:
        path = Path(spec).expanduser().resolve()
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise InitAdapterError(f"{key}: no adapter weights ({' or '.join(WEIGHT_FILES)}) in {path}")
    _check_shape(cfg.model, path, key)
    tags = {"init_adapter": spec, "init_adapter_sha256": adapter_fingerprint(str(path))}
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, init_adapter=str(path)),
        tracking=dataclasses.replace(cfg.tracking, tags={**cfg.tracking.tags, **tags}),
    )


def _from_run(cfg: RunConfig, run_id: str, key: str) -> Path:
    from alignment.evaluation.runner import TargetError, run_adapter
    from alignment.tracking import Tracker

    tracker = Tracker(cfg.tracking, Path(cfg.output_dir))
    try:
        model, adapter, _, _ = run_adapter(tracker, run_id, cfg.cache_dir)
    except TargetError as err:
        raise InitAdapterError(f"{key}: {err}") from None
    mine, theirs = _base_identity(cfg.model), _base_identity(model)
    if mine != theirs:
        raise InitAdapterError(
            f"{key}: that run trained on base model {model.name} ({theirs}), this run loads "
            f"{cfg.model.name} ({mine}); an adapter only fits its own base"
        )
    return Path(adapter).resolve()


def _base_identity(m: ModelConfig) -> tuple:
    return (m.source, m.hub_id, m.revision, m.gguf_file, m.tiny_hidden, m.tiny_layers, m.tiny_vocab)


def _check_shape(model: ModelConfig, path: Path, key: str) -> None:
    """Training continues the init adapter, so its shape is the run's: model.lora must say the
    same, or the logged params would describe an adapter that was never trained."""
    saved = json.loads((path / "adapter_config.json").read_text())
    lora, targets = model.lora, saved.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets  # peft allows one regex
    pairs = {
        "r": (saved.get("r"), lora.r),
        "alpha": (saved.get("lora_alpha"), lora.alpha),
        "dropout": (saved.get("lora_dropout"), lora.dropout),
        "target_modules": (sorted(targets), sorted(lora.target_modules)),
    }
    differ = [f"model.lora.{k}={want} (the adapter has {got})" for k, (got, want) in pairs.items()
              if got != want]  # fmt: skip
    if differ:
        raise InitAdapterError(
            f"{key}: the run's LoRA shape differs from the adapter it continues: "
            f"{'; '.join(differ)}; set model.lora to the adapter's"
        )


@functools.lru_cache(maxsize=16)
def _fingerprint(path: str, stamp: tuple) -> str:
    root = Path(path)
    config = json.loads((root / "adapter_config.json").read_text())
    digest = hashlib.sha256(
        json.dumps(
            {k: v for k, v in config.items() if k not in NOT_IDENTITY}, sort_keys=True
        ).encode()
    )
    weights = next(root / name for name in WEIGHT_FILES if (root / name).is_file())
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_fingerprint(path: str) -> str:
    """sha256 of the adapter's weights file and its function-relevant config keys."""
    root = Path(path)
    stamp = tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.iterdir())
        if p.name in (*WEIGHT_FILES, "adapter_config.json")
    )
    return _fingerprint(str(root.resolve()), stamp)
