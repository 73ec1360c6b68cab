"""Schemas of the run as a whole: training loop settings, MLflow tracking and RunConfig."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from alignment.config.checks import check, check_choice
from alignment.config.data import DatasetConfig
from alignment.config.eval import EvalConfig
from alignment.config.method import MethodConfig
from alignment.config.model import ModelConfig
from alignment.config.optim import OptimizerConfig
from alignment.config.risk import RegularizerConfig, RiskConfig

NAN_POLICIES = ("stop", "skip_step")


@dataclass
class TrainConfig:
    """The training loop. Effective batch = batch_size * grad_accum (pairs per optimizer step).

    max_steps > 0 overrides epochs. group_by_length buckets examples of similar length into a
    batch so padding stays small. completion_only_logits projects only the positions from the
    shortest prompt onwards through the LM head (log-probs are identical; it saves compute).
    """

    batch_size: int = 4
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int = -1
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int = 2
    eval_steps: int = 0
    device: str = "auto"
    group_by_length: bool = True
    completion_only_logits: bool = True
    torch_threads: int = 0
    # Reference log-probs: `cached` precomputes them for the whole dataset once (shared by every
    # run of a grid with the same model and data), `online` runs the adapter-disabled forward in
    # each step, `auto` caches when the run sees every row at least once (then the cache is never
    # more work) and goes online otherwise.
    reference: str = "auto"
    # After training, answer this many held-out harmful prompts (plus one benign) with the
    # adapters off and on, and log the pairs (samples.md). 0 skips it.
    samples: int = 2
    # A non-finite loss or gradient norm: `stop` ends the run at that step, before the optimizer
    # step (the last checkpoint stays the last finite one; the MLflow run ends FAILED);
    # `skip_step` drops that optimizer step (counted as train/skipped_steps) and stops once
    # max_consecutive_skips steps in a row were non-finite.
    nan_policy: str = "stop"
    max_consecutive_skips: int = 5
    # How several ranks (torchrun, or a Slurm job with tasks_per_node/nodes > 1) share the work:
    # `ddp` replicates the model and averages gradients; `fsdp` shards parameters, gradients and
    # optimizer state by decoder layer (FSDP2, full shard). Ignored by single-process runs.
    distributed: str = "ddp"

    def __post_init__(self) -> None:
        for key in ("batch_size", "grad_accum", "logging_steps", "save_steps", "save_total_limit"):
            check(f"train.{key}", getattr(self, key), ge=1)
        check("train.epochs", self.epochs, gt=0)
        check("train.max_steps", self.max_steps, ge=-1)  # -1 (or 0): train for `epochs`
        for key in ("eval_steps", "torch_threads", "samples"):
            check(f"train.{key}", getattr(self, key), ge=0)
        check_choice("train.reference", self.reference, ("auto", "cached", "online"))
        check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        check_choice("train.nan_policy", self.nan_policy, NAN_POLICIES)
        check("train.max_consecutive_skips", self.max_consecutive_skips, ge=1)
        check_choice("train.distributed", self.distributed, ("ddp", "fsdp"))


@dataclass
class TrackingConfig:
    """MLflow. `uri`: sqlite:///mlflow.db locally (relative paths resolve against the launch
    directory), http://host:port for an `mlflow server` shared by a cluster sweep.

    Records go to a journal in the run directory first and reach MLflow in the background, so
    training never waits on it. `flush_timeout_s`: at the end, how long to wait for MLflow to
    have them all; what is left stays in the journal (`python -m alignment.tracking sync`).
    """

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "alignment"
    run_name: str | None = None
    enabled: bool = True
    log_adapter: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    flush_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.flush_timeout_s < float("inf"):
            raise ValueError(f"tracking.flush_timeout_s must be >= 0, got {self.flush_timeout_s}")


@dataclass
class RunConfig:
    seed: int = 0
    # Free text that only separates runs: a new tag is a new output directory and MLflow run.
    tag: str = ""
    # `python train.py rerun=<MLflow run id>`: train that run again, from its logged overrides,
    # into a new run tagged rerun_of=<id> (alignment/rerun.py).
    rerun: str | None = None
    output_dir: str = MISSING
    cache_dir: str = "~/.cache/alignment-lab"
    eval_after_train: bool = False
    model: ModelConfig = MISSING
    # Typed as Any so each group option can carry its own subclass schema; the option's YAML names
    # that schema (`defaults: [base_<name>]`), so unknown keys still fail at compose time.
    method: Any = MISSING
    optimizer: Any = MISSING
    dataset: DatasetConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    # null (regularizer=none) or a RegularizerConfig subclass named by the option's YAML.
    regularizer: Any = None
    # A stacked run (experiment=stacked): methods trained before `method`, in this order, each
    # stage starting from the adapter of the one before and using its policy as pi_ref; one
    # command, one parent MLflow run with a nested run per stage (alignment/stacked.py).
    # Each value is a method config (`/method@stages.<name>: <method>` in a defaults list), so
    # `stages.dpo.beta=0.2` works on the command line. Empty: a single run.
    stages: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check("seed", self.seed, ge=0)
        if not isinstance(self.method, MethodConfig):
            raise TypeError(f"method must be a MethodConfig, got {type(self.method).__name__}")
        if self.stages:
            _check_stages(self.stages, self.method)
        if not isinstance(self.optimizer, OptimizerConfig):
            raise TypeError(
                f"optimizer must be an OptimizerConfig, got {type(self.optimizer).__name__}"
            )
        if self.train.distributed == "fsdp" and not self.optimizer.shards_with_fsdp:
            raise ValueError(
                f"train.distributed=fsdp does not support optimizer={self.optimizer.name}; use ddp"
            )
        if self.train.distributed == "fsdp" and self.eval_after_train:
            raise ValueError(
                "train.distributed=fsdp does not support eval_after_train (rank 0 cannot run the "
                "sharded model alone); run evaluate.py on the saved adapter"
            )
        if self.regularizer is not None and not isinstance(self.regularizer, RegularizerConfig):
            raise TypeError(f"regularizer must be a RegularizerConfig, got {self.regularizer!r}")


def _check_stages(stages: dict[str, Any], method: MethodConfig) -> None:
    """Every stage, and the final method, must train an adapter for the next one to start from."""
    from alignment.methods import METHODS  # the registry knows which methods train

    for key, stage in [*stages.items(), ("method", method)]:
        where = f"stages.{key}" if key != "method" else "method"
        if not isinstance(stage, MethodConfig):
            raise TypeError(f"{where} must be a method config, got {type(stage).__name__}")
        if not METHODS.get(stage.name).trains:
            raise ValueError(f"{where}: method {stage.name!r} trains nothing; a stage must train")
