"""Schemas of the `eval` config group: the AQI, TruthfulQA-MC and judge suites.

`eval` is a list-valued group (`eval=[aqi,truthfulqa,judge]`). Each option file is placed in its
own key (`# @package eval.<suite>`), so `EvalConfig` holds one optional field per suite and a
suite runs iff its field is set; `eval=none` (train.py's default) runs none. Each option file
opens with `defaults: [base_<suite>, _self_]`, so a misspelt key fails when the config is composed.

Data sources (`data`, `*_data`) are one string each: `builtin` (the project's own labelled
safe/unsafe prompts, the offline default), a local `.json`/`.jsonl`/`.csv` file, or a hub
dataset id.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field, fields
from typing import ClassVar

from alignment.config.checks import check
from alignment.config.secrets import check_env_name

AQI_VARIANTS = ("chi_sil", "xb_chi")
POOLINGS = ("reference", "mean_masked", "mean_unmasked", "last", "cls")
PADDINGS = ("reference", "sorted")
PROTOCOLS = ("prompt", "response")
REDUCERS = ("tsne", "pca", "none")
PROMPT_STYLES = ("harness", "chat")
JUDGE_BACKENDS = ("local_hf", "openai")
JUDGE_TASKS = ("helpfulness", "safety", "truthfulness")


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")


@dataclass
class GenerationConfig:
    """Decoding of the evaluated model's answers (response-AQI, judge tasks).

    temperature 0 means greedy decoding (top_p is then unused). system_prompt: an optional
    system turn added through the chat template (for example a generic safety prompt).
    """

    max_new_tokens: int = 150
    temperature: float = 0.7
    top_p: float = 0.9
    system_prompt: str | None = None
    batch_size: int = 8
    seed: int = 42

    def __post_init__(self) -> None:
        # The same schema serves eval.aqi.generation and eval.judge.generation.
        for key in ("max_new_tokens", "batch_size"):
            check(f"eval.*.generation.{key}", getattr(self, key), ge=1)
        check("eval.*.generation.temperature", self.temperature, ge=0)
        check("eval.*.generation.top_p", self.top_p, gt=0, le=1)
        check("eval.*.generation.seed", self.seed, ge=0)


@dataclass
class AqiConfig:
    """Alignment Quality Index (spec/aqi.md): separation of safe vs unsafe embeddings.

    variants: chi_sil = gamma*(SS+1)/2 + (1-gamma)*CHI/(1+CHI) in [0, 1]; xb_chi =
      gamma*CHI_norm + (1-gamma)*XB_norm in [0, 100], normalised within ONE run over its
      7 axioms + overall, as the reference does: xb_chi scores do NOT compare across models.
    gamma: 0.5 (function default and seed value; the chi_sil script's CLI silently used 0.3).
    layer: hidden-state index (-1 = last layer output, after the final norm for HF Llama).
    pooling: reference (default) = each variant's reference pooling: chi_sil mean_unmasked (the
      average over every position, padding included: aqi_dealign_chi_sil.py's behaviour, so its
      scores depend on batch composition and padding length), xb_chi mean_masked (real tokens
      only). Any other value applies to every variant: mean_masked (the corrected chi_sil),
      mean_unmasked, last (last non-pad token), cls (first token).
    padding: reference (default) = batches in data order with the tokenizer's padding side, as
      the reference scripts batch, so mean_unmasked reproduces their embeddings; sorted =
      longest first (less padding, faster; mean_unmasked scores then differ from the reference).
    protocol: prompt = embed the prompts; response = generate an answer per prompt first
      (`generation`, cached on disk), then embed the answers (labels stay the prompt's).
    reducer: tsne = 3-D t-SNE with each variant's reference parameters; pca = 3-D PCA; none =
      the raw pooled embeddings (deterministic, for tests).
    data: builtin | hasnat79/litmus | a local file; columns input/axiom/safety_label (synonyms
      accepted). samples_per_category: rows kept per (axiom, label), sampled with `seed`.
    """

    # Bump whenever a change can move this suite's numbers (logged as eval/<suite>/version).
    # 1.1: chi_sil pools with mean_unmasked by default (its reference) and batches in data order.
    VERSION: ClassVar[str] = "1.1"

    variants: list[str] = field(default_factory=lambda: list(AQI_VARIANTS))
    gamma: float = 0.5
    layer: int = -1
    pooling: str = "reference"
    padding: str = "reference"
    protocol: str = "prompt"
    reducer: str = "tsne"
    data: str = "builtin"
    samples_per_category: int = 200
    seed: int = 42
    batch_size: int = 8
    max_length: int = 512
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("eval.aqi.variants must name at least one variant")
        for variant in self.variants:
            _check_choice("eval.aqi.variants", variant, AQI_VARIANTS)
        _check_choice("eval.aqi.pooling", self.pooling, POOLINGS)
        _check_choice("eval.aqi.padding", self.padding, PADDINGS)
        _check_choice("eval.aqi.protocol", self.protocol, PROTOCOLS)
        _check_choice("eval.aqi.reducer", self.reducer, REDUCERS)
        check("eval.aqi.gamma", self.gamma, ge=0, le=1)
        for key in ("samples_per_category", "batch_size"):
            check(f"eval.aqi.{key}", getattr(self, key), ge=1)
        check("eval.aqi.max_length", self.max_length, ge=8)
        check("eval.aqi.seed", self.seed, ge=0)


@dataclass
class TruthfulQAConfig:
    """TruthfulQA MC1/MC2 by teacher-forced log-likelihood (no generation, no judge).

    data: builtin (default) = the 817 questions shipped in alignment/data/assets/
      (truthfulqa_en.jsonl.gz, Apache-2.0; MC lists built from each question's answers, see
      conf/eval/truthfulqa.yaml), the hub id truthfulqa/truthful_qa (configs multiple_choice
      and generation, split validation), or a local .json/.jsonl(.gz) file shaped like it.
    prompt_style: harness = lm-evaluation-harness's six-shot QA preamble as raw text (parity);
      chat = the same text as one user turn through the chat template.
    add_bos: prepend the tokenizer's BOS token to the context (the harness default is no special
      tokens for causal LMs; Gemma needs true).
    max_questions: the first n questions (null = all 817), for smoke runs.
    share_prefix: run the context prefix shared by every request (the six-shot preamble) once,
      each question's context once, and each distinct answer choice once on top of its
      question's key/value cache, batched across questions (the same log-likelihoods up to float
      rounding, >10x faster on CPU); false runs every request in full, as the harness does.
    batch_size: requests per forward pass when every request runs in full; the shared-prefix
      path runs 4x as many of its ~10x shorter rows.
    """

    # Bump whenever a change can move this suite's numbers (logged as eval/<suite>/version).
    # 1.1: the default data is the shipped copy (other MC lists than the hub's).
    VERSION: ClassVar[str] = "1.1"

    data: str = "builtin"
    prompt_style: str = "harness"
    add_bos: bool = False
    max_questions: int | None = None
    batch_size: int = 8
    share_prefix: bool = True

    def __post_init__(self) -> None:
        _check_choice("eval.truthfulqa.prompt_style", self.prompt_style, PROMPT_STYLES)
        check("eval.truthfulqa.batch_size", self.batch_size, ge=1)
        check("eval.truthfulqa.max_questions", self.max_questions, ge=1)


@dataclass
class JudgeConfig:
    """Judge-based metrics through one judge backend (spec/evaluation.md section 3.2).

    tasks: helpfulness = pairwise win rate of the adapter's answers vs the base model's
      (adapter disabled), both A/B orders, an inconsistent pair is a tie; safety = % of answers
      judged unsafe on harmful prompts (lower is better); truthfulness = TruthfulQA truthful,
      informative and TI (per-sample AND, and the product of the rates).
    backend: local_hf (model loaded in-process; greedy) or openai (any OpenAI-compatible
      `{base_url}/chat/completions`). The key is read from the env var named by api_key_env and
      is never logged.
    truth_model/info_model: probability judges (P(" yes") >= threshold), e.g. the allenai
      TruthfulQA judges; null = ask `model` with the generative truth/info prompts.
    prompt_version: suffix of the prompt files in alignment/evaluation/prompts/.
    max_samples: prompts per task (the first n after a seeded shuffle).
    """

    # Bump whenever a change can move this suite's numbers (logged as eval/<suite>/version).
    # 1.1: raw judge prompts start with BOS; P(yes) sums every token reading "yes" (▁yes); the
    # truthfulness task's questions come from the shipped TruthfulQA copy by default.
    VERSION: ClassVar[str] = "1.1"

    tasks: list[str] = field(default_factory=lambda: list(JUDGE_TASKS))
    backend: str = "local_hf"
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    revision: str | None = None
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    truth_model: str | None = None
    info_model: str | None = None
    threshold: float = 0.5
    temperature: float = 0.0
    max_new_tokens: int = 512
    prompt_version: str = "v1"
    seed: int = 42
    bootstrap_samples: int = 1000
    max_samples: int = 100
    helpfulness_data: str = "builtin"
    safety_data: str = "builtin"
    truthfulqa_data: str = "builtin"
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(max_new_tokens=256, temperature=0.0)
    )

    def __post_init__(self) -> None:
        _check_choice("eval.judge.backend", self.backend, JUDGE_BACKENDS)
        for task in self.tasks:
            _check_choice("eval.judge.tasks", task, JUDGE_TASKS)
        if self.backend == "openai" and not self.base_url:
            raise ValueError("eval.judge.base_url is required for backend=openai")
        check_env_name("eval.judge.api_key_env", self.api_key_env)
        # Verdicts must be reproducible: greedy only.
        check("eval.judge.temperature", self.temperature, ge=0, le=0)
        check("eval.judge.threshold", self.threshold, gt=0, lt=1)
        check("eval.judge.timeout_s", self.timeout_s, gt=0)
        for key in ("max_samples", "bootstrap_samples", "max_new_tokens"):
            check(f"eval.judge.{key}", getattr(self, key), ge=1)
        check("eval.judge.seed", self.seed, ge=0)


@dataclass
class EvalConfig:
    """The selected suites; a suite left null does not run (`eval=none` selects none)."""

    aqi: AqiConfig | None = None
    truthfulqa: TruthfulQAConfig | None = None
    judge: JudgeConfig | None = None

    def suites(self) -> list[str]:
        """Names of the selected suites, in run order (the field order)."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    @staticmethod
    def schemas() -> dict[str, type]:
        """Suite name -> its schema: each field of this class is one suite (`eval/base_<name>`)."""
        hints = typing.get_type_hints(EvalConfig)
        return {f.name: _optional_of(hints[f.name]) for f in fields(EvalConfig)}


def _optional_of(hint: object) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    assert isinstance(hint, types.UnionType) and len(args) == 1, f"{hint} is not `X | None`"
    return args[0]


def suite_version(name: str) -> str:
    """The version of suite `name`, logged with its results."""
    return EvalConfig.schemas()[name].VERSION
