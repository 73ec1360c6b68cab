"""A tiny Hydra app for the Slurm tests: records where and how it ran in its output dir.

python my_app.py -m hydra/launcher=submitit_slurm x=1,2,3
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> int:
    hydra_cfg = HydraConfig.get()
    record = {
        "x": cfg.x,
        "overrides": list(hydra_cfg.overrides.task),
        "job_num": hydra_cfg.job.num,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }
    Path(hydra_cfg.runtime.output_dir, "result.json").write_text(json.dumps(record))
    print(json.dumps(record))
    if cfg.fail:
        raise RuntimeError(f"asked to fail (x={cfg.x})")
    return cfg.x * 10


if __name__ == "__main__":
    main()
