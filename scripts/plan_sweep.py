"""Dry run of a sweep: expand `python train.py -m <overrides>` exactly as Hydra's basic sweeper
would (command line plus `hydra.sweeper.params` of the selected experiment), compose and validate
every cell against the schemas, and print the cell count. Nothing is trained or submitted.

    python scripts/plan_sweep.py experiment=paper_grid            # 28 cells
    python scripts/plan_sweep.py experiment=factual_dpo_delta_grid model=llama3_8b,mistral_7b
    python scripts/plan_sweep.py method=dpo,cita optimizer=adamw,grit model=llama3_8b,mistral_7b
    python scripts/plan_sweep.py --risk model=tiny optimizer.lr=1e-4,1e3 train.max_steps=2

--risk also runs each cell's risk preflight (alignment.risk: the model is loaded, nothing is
trained or tracked) and prints its forecast collapse step against the cell's planned steps, and
what risk.gate=skip would do with it.
"""

from __future__ import annotations

import argparse
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
    params = primary.hydra.sweeper.params  # None unless an experiment sets a sweep list
    params = OmegaConf.to_container(params) if params is not None else {}
    swept = [f"{key}={value}" for key, value in params.items()]
    parsed = parser.parse_overrides(overrides=[*swept, *overrides])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


GROUPS = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()}


def _is_group(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~").split("@")[0]
    return key in GROUPS or "/" in key


def plan(overrides: list[str]) -> list[list[str]]:
    return [job for job, _ in plan_configs(overrides)]


def plan_configs(overrides: list[str]) -> list[tuple[list[str], object]]:
    """Compose once per distinct set of group choices, then apply each job's value overrides
    and validate the result against the schemas (what composing each job would check).
    Returns each job's overrides with its RunConfig."""
    register_configs()
    parser = OverridesParser.create()
    composed, configs = {}, []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        jobs = expand(overrides)
        for job in jobs:
            groups = tuple(o for o in job if _is_group(o))
            if groups not in composed:
                composed[groups] = compose("train", overrides=[*groups, "output_dir=/dev/null"])
            cfg = composed[groups].copy()
            for o in parser.parse_overrides([o for o in job if not _is_group(o)]):
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
            configs.append(OmegaConf.to_object(cfg))  # typos, wrong types, bad values fail here
    return list(zip(jobs, configs, strict=True))


def forecast(planned: list[tuple[list[str], object]]) -> None:
    """Each cell's preflight forecast (its collapse step against its planned steps)."""
    from alignment.risk.builder import summary_line
    from alignment.risk.runner import gate_verdict
    from alignment.risk.standalone import preflight_only

    for i, (_, cfg) in enumerate(planned):
        report, steps, verdict = preflight_only(cfg, track=False)
        would = gate_verdict(report.forecast.collapse_step, steps, "skip")
        print(f"  {i:4d}  risk: {summary_line(report, steps, verdict)}")
        print(f"        risk.gate=skip would {'SKIP' if would == 'skip' else 'run'} this cell")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py -m")
    parser.add_argument("--risk", action="store_true", help="print each cell's risk forecast")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    planned = plan_configs(args.overrides)
    for i, (job, _) in enumerate(planned):
        print(f"  {i:4d}  {' '.join(job)}")
    if args.risk:
        forecast(planned)
    print(f"{len(planned)} cells composed and validated in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
