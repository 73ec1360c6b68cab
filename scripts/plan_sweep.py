"""Dry run of a sweep: expand `python train.py -m <overrides>` exactly as Hydra's basic sweeper
would (command line plus `hydra.sweeper.params` of the selected experiment), compose and validate
every cell against the schemas, and print the GPUs each cell asks for, the GPU-hours the grid
may use (its wall-time limit) and the cell count (last line). Nothing is trained or submitted.

    python scripts/plan_sweep.py experiment=paper_grid            # 28 cells
    python scripts/plan_sweep.py experiment=factual_dpo_delta_grid model=llama3_8b,mistral_7b
    python scripts/plan_sweep.py method=dpo,cita optimizer=adamw,grit model=llama3_8b,mistral_7b
    python scripts/plan_sweep.py experiment=paper_grid hydra/launcher=slurm \
        hydra.launcher.nodes=2 hydra.launcher.tasks_per_node=4 hydra.launcher.gpus_per_node=4
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
from alignment.config.cli import one_line, to_config  # noqa: E402
from alignment.config.sweep import check_launcher  # noqa: E402


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
    """Group choices and hydra.* settings are applied by composing; the rest per job."""
    key = override.split("=", 1)[0].lstrip("+~").split("@")[0]
    return key in GROUPS or "/" in key or key.startswith("hydra.")


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
            configs.append(
                to_config(cfg)
            )  # typos, appended keys, wrong types, bad values fail here
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


def resources(overrides: list[str]) -> dict:
    """What one cell asks the launcher for: ranks, GPUs and its wall-time limit (hours).

    One rank per GPU (conf/hydra/launcher/slurm.yaml): a cell of nodes x tasks_per_node ranks
    uses nodes x gpus_per_node GPUs. The basic launcher runs cells here, one after another, on
    whatever GPU this machine has (counted as 1) and without a time limit."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        launcher = compose("train", overrides=fixed, return_hydra_config=True).hydra.launcher
    check_launcher(launcher)  # what the sweep itself checks before it submits
    if "tasks_per_node" not in launcher:  # Hydra's basic launcher
        return {"launcher": "basic", "ranks": 1, "gpus": 1, "hours": None}
    nodes, gpus = launcher.nodes, launcher.gpus_per_node
    return {
        "launcher": launcher._target_.rsplit(".", 1)[1],
        "ranks": nodes * launcher.tasks_per_node,
        "gpus": nodes * gpus if gpus else 0,
        "hours": launcher.timeout_min / 60,
    }


def gpu_line(n_cells: int, res: dict) -> str:
    if res["hours"] is None:
        return f"GPUs per cell: {res['gpus']} (basic launcher: cells run one after another here)"
    gpu_hours = n_cells * res["gpus"] * res["hours"]
    return (
        f"GPUs per cell: {res['gpus']} ({res['ranks']} ranks, {res['launcher']}); at most "
        f"{gpu_hours:.0f} GPU-hours for {n_cells} cells at the {res['hours']:.1f} h limit"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py -m")
    parser.add_argument("--risk", action="store_true", help="print each cell's risk forecast")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        planned = plan_configs(args.overrides)
    except Exception as err:  # a cell that does not compose: one line, exit 1, nothing planned
        raise SystemExit(f"error: {one_line(err)}") from None
    for i, (job, _) in enumerate(planned):
        print(f"  {i:4d}  {' '.join(job)}")
    if args.risk:
        forecast(planned)
    print(gpu_line(len(planned), resources(args.overrides)))
    print(f"{len(planned)} cells composed and validated in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
