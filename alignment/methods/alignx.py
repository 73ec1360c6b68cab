"""AlignX-repro (spec/alignx.md): schema and registry entry, labelled "AlignX-repro" everywhere.

One `train.py method=alignx` runs both stages as nested MLflow runs under the run it creates:
stage 1 trains one LoRA expert per axis on prompts with an injected prefix (summed per-axis NLL,
each row through its own expert) and fits the shared latent projector; stage 2 fits the router
and the calibrators. `stage=1` or `stage=2 stage1_run=<run id>` runs one stage alone. The driver
is alignment/alignx/stages.py; the maths is in alignment/alignx/.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from alignment.alignx.prefixes import PREFIX_STYLES
from alignment.alignx.routing import COMBINES
from alignment.config.axes import AxisDataConfig
from alignment.config.checks import check, check_choice
from alignment.config.method import MethodConfig
from alignment.losses import axis_sum_nll
from alignment.methods.registry import Method, MethodSetupError, register

STAGES = ("all", "1", "2")
MIXES = ("logits", "adapters")


@dataclass
class AlignxConfig(MethodConfig):
    """AlignX-repro. README values are the defaults; the rest is this reconstruction's.

    stage: all | 1 | 2; stage1_run: with stage=2, the MLflow run (the stage-1 run or its parent)
      whose experts and projector to use.
    prefix: the stage-1 injected prefix: axis ([HELPFUL], [HARMLESS], [HONEST]), cot (the
      reference's "Chain of Thought: Let's think step by step."), axis_cot, or none.
    k: latent size (256); router_features: router feature width (1024, W_r is 3 x 1024).
    temperature (1), lambda1 (0.6, natural), lambda2 (0.4, fractal), eps (0.05): routing and
      calibration; combine: product (router x calibrators), calibration (calibrators only),
      router (router only).
    mix: logits (sum_a w_a logits_a) | adapters (sum_a w_a delta_a inside the LoRA layers).
    gamma: task-vector scale of every expert at inference (the reference applies tau with 1).
    projector_steps, router_steps, fit_lr: full-batch AdamW fits on pooled prompt states.
    """

    stage: str = "all"
    stage1_run: str | None = None
    prefix: str = "axis"
    k: int = 256
    router_features: int = 1024
    temperature: float = 1.0
    lambda1: float = 0.6
    lambda2: float = 0.4
    eps: float = 0.05
    combine: str = "product"
    mix: str = "logits"
    gamma: float = 1.0
    projector_steps: int = 200
    router_steps: int = 200
    fit_lr: float = 1e-3
    data: AxisDataConfig = field(default_factory=AxisDataConfig)

    def __post_init__(self) -> None:
        check_choice("method.stage", str(self.stage), STAGES)
        check_choice("method.prefix", self.prefix, PREFIX_STYLES)
        check_choice("method.combine", self.combine, COMBINES)
        check_choice("method.mix", self.mix, MIXES)
        for key in ("k", "router_features"):
            check(f"method.{key}", getattr(self, key), ge=1)
        check("method.temperature", self.temperature, gt=0)
        check("method.eps", self.eps, gt=0, le=1)
        for key in ("lambda1", "lambda2", "projector_steps", "router_steps"):
            check(f"method.{key}", getattr(self, key), ge=0)
        check("method.gamma", self.gamma)
        check("method.fit_lr", self.fit_lr, gt=0)
        if self.lambda1 + self.lambda2 <= 0:
            raise ValueError("method.lambda1 + method.lambda2 must be > 0")
        if str(self.stage) == "2" and not self.stage1_run:
            raise ValueError("method.stage=2 needs method.stage1_run=<MLflow run id of stage 1>")


def _data(cfg, method: Method, tokenizer):
    """Stage 1's data: the axis datasets with each axis's prefix injected, round-robin."""
    from alignment.alignx.prefixes import expert_prefix, inject
    from alignment.axes import AXES
    from alignment.data.axis_data import axis_sources, prepare_axis_data

    m = cfg.method
    if str(m.stage) == "1" and cfg.eval_after_train and cfg.eval.suites():
        # Stage 1 leaves experts without a router: there is no AlignX-repro model to score.
        raise MethodSetupError(
            "method.stage=1 with eval_after_train=true: stage 1 alone has no router to evaluate; "
            "run stage 2 (method.stage=2 method.stage1_run=<run id>) and evaluate that run"
        )

    def add_prefix(axis: int, examples: list) -> list:
        prefix = expert_prefix(AXES[axis], m.prefix)
        return [inject(ex, prefix) for ex in examples]

    if str(m.stage) == "2":  # a bad run id fails here, before any MLflow run is created
        from alignment.alignx.locate import locate_stage1

        locate_stage1(cfg, m.stage1_run)
    sources = axis_sources(cfg.dataset, m.data)
    return prepare_axis_data(cfg, sources, tokenizer, method, m.data.round_robin, add_prefix)


def _model(cfg, device, saved: Path | None, trainable: bool):
    from alignment.alignx.stages import evaluation_model, stage1_model

    if saved is None:
        return stage1_model(cfg, device)
    return evaluation_model(cfg, device, saved)


def _driver(*args):
    from alignment.alignx.stages import run_alignx

    return run_alignx(*args)


# Every key shapes the model or its training (the hooks), none is a loss argument.
FIELDS = tuple(f.name for f in fields(AlignxConfig) if f.name != "name")
register(
    Method(
        "alignx",
        AlignxConfig,
        axis_sum_nll,
        needs_pairs=False,
        model_keys=FIELDS,
        label="AlignX-repro",
        prepare_data=_data,
        build_model=_model,
        driver=_driver,
    )
)
