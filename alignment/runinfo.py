"""What identifies a run in MLflow: its tags and its name, shared by training and evaluation.

Method-specific tags (a grid axis such as Factual-DPO's delta) come from the method registry, so
nothing here knows any method.
"""

from __future__ import annotations

from pathlib import Path

from alignment.config import RunConfig
from alignment.methods import get_method
from alignment.tracking import git_state

REPO = Path(__file__).resolve().parents[1]


def run_tags(cfg: RunConfig) -> dict[str, str]:
    sha, dirty = git_state(REPO)
    return {
        "method": cfg.method.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "dataset": cfg.dataset.name,
        "seed": str(cfg.seed),
        "tag": cfg.tag,
        "git_commit": sha,
        "git_dirty": dirty,
        "mlflow.source.git.commit": sha,
        **get_method(cfg.method).tags(cfg.method),
        **({"rerun_of": cfg.rerun} if cfg.rerun else {}),
    }


def run_name(cfg: RunConfig, suffix: str = "") -> str:
    """`<method>-<optimizer>-<model>-s<seed>[-<tag>][-<suffix>]`, unless tracking.run_name is set:
    every cell of a grid (sft and sft+grit included) gets a distinct, readable name."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    parts = [cfg.method.name, cfg.optimizer.name, cfg.model.name, f"s{cfg.seed}"]
    parts += [p for p in (cfg.tag, suffix) if p]
    return "-".join(parts)
