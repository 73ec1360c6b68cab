"""Dry run of a sweep: expand `python train.py -m <overrides>` exactly as Hydra's basic sweeper
would (command line plus `hydra.sweeper.params` of the selected experiment), compose and validate
every cell against the schemas, and print the cell count. Nothing is trained or submitted.

    python scripts/plan_sweep.py experiment=paper_grid            # 28 cells
    python scripts/plan_sweep.py experiment=factual_dpo_delta_grid model=llama3_8b,mistral_7b
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from alignment.config import register_configs  # noqa: E402


def expand(overrides: list[str]) -> list[list[str]]:
    """The per-job override lists the basic sweeper would launch, in its order."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    primary = compose("train", overrides=fixed, return_hydra_config=True)
    # Without an experiment preset the sweeper has no params node at all (None).
    node = primary.hydra.sweeper.params
    params = (OmegaConf.to_container(node) if node is not None else None) or {}
    swept = [f"{key}={value}" for key, value in params.items()]
    parsed = parser.parse_overrides(overrides=[*swept, *overrides])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


GROUPS = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()}


def _is_group(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~").split("@")[0]
    return key in GROUPS or "/" in key


def plan(overrides: list[str]) -> list[list[str]]:
    """Compose once per distinct set of group choices, then apply each job's value overrides
    and validate the result against the schemas (what composing each job would check)."""
    register_configs()
    parser = OverridesParser.create()
    composed = {}
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        jobs = expand(overrides)
        for job in jobs:
            groups = tuple(o for o in job if _is_group(o))
            if groups not in composed:
                composed[groups] = compose("train", overrides=[*groups, "output_dir=/dev/null"])
            cfg = composed[groups].copy()
            for o in parser.parse_overrides([o for o in job if not _is_group(o)]):
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
            OmegaConf.to_object(cfg)  # typos, wrong types, bad values fail here
    return jobs


def main(argv: list[str]) -> int:
    start = time.perf_counter()
    jobs = plan(argv)
    for i, job in enumerate(jobs):
        print(f"  {i:4d}  {' '.join(job)}")
    print(f"{len(jobs)} cells composed and validated in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
