"""The three evaluation suites (aqi, truthfulqa, judge): data -> model -> metrics, params, files.

Each suite returns a `SuiteOutput`; the runner prefixes keys with `eval/<suite>/` and logs them.
Metric names inside a suite are documented on each function.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alignment.config import JudgeConfig, RunConfig
from alignment.data.readers import load_records, text_field
from alignment.data.sources import (
    TruthfulQAItem,
    load_beavertails,
    load_litmus,
    load_safety_eval,
    load_truthfulqa,
)
from alignment.evaluation import judge_tasks as J
from alignment.evaluation.aqi import (
    OVERALL,
    embed_pooled,
    plot_clusters,
    score_aqi,
    variant_pooling,
    write_summary_csv,
)
from alignment.evaluation.generation import adapters_disabled, generate_answers
from alignment.evaluation.judges import (
    JudgeBackend,
    LocalHFJudge,
    OpenAIJudge,
    backend_params,
    load_prompt,
)
from alignment.evaluation.metrics import metric_key
from alignment.evaluation.truthfulqa import TRUTHFULQA_BUILTIN, preamble, score_truthfulqa
from alignment.registry import Registry

logger = logging.getLogger(__name__)

TRUTHFULQA_HUB = "truthfulqa/truthful_qa"


@dataclass
class EvalContext:
    """What every suite needs. weights_key / base_key identify the evaluated and the base weights
    for the answer caches; has_adapter is False for the baseline itself."""

    cfg: RunConfig
    model: object
    tokenizer: object
    out_dir: Path
    weights_key: str
    base_key: str
    has_adapter: bool


@dataclass
class SuiteOutput:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


Suite = Callable[[EvalContext], SuiteOutput]
SUITES: Registry[Suite] = Registry("evaluation suite")


def _answers(ctx: EvalContext, prompts: list[str], gen, *, base: bool = False) -> list[str]:
    kwargs = {
        "cache_dir": ctx.cfg.cache_dir,
        "supports_system_role": ctx.cfg.model.supports_system_role,
    }
    if not base:
        return generate_answers(
            ctx.model, ctx.tokenizer, prompts, gen, weights_key=ctx.weights_key, **kwargs
        )
    with adapters_disabled(ctx.model):
        return generate_answers(
            ctx.model, ctx.tokenizer, prompts, gen, weights_key=ctx.base_key, **kwargs
        )


@SUITES.register("aqi")
def run_aqi(ctx: EvalContext) -> SuiteOutput:
    """Metrics: `<variant>/<axiom>` and `<variant>/overall` (AQI), and for overall also ss,
    ss_norm, chi, chi_norm, xb, dbs (and xb_chi's xb_norm). Files: aqi_summary.csv and
    aqi_<variant>.png. Params: the settings and `<variant>/pooling`, the pooling each variant
    actually used."""
    cfg = ctx.cfg.eval.aqi
    if cfg.data == "builtin":
        prompts = load_safety_eval(cfg.samples_per_category, cfg.seed)
    else:
        prompts = load_litmus(cfg.data, cfg.samples_per_category, cfg.seed)
    texts = [p.text for p in prompts]
    if cfg.protocol == "response":
        texts = _answers(ctx, texts, cfg.generation)
    pooling = {v: variant_pooling(v, cfg.pooling) for v in cfg.variants}
    emb = embed_pooled(
        ctx.model,
        ctx.tokenizer,
        texts,
        poolings=sorted(set(pooling.values())),
        layer=cfg.layer,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        padding=cfg.padding,
    )
    out, results = SuiteOutput(), []
    for variant in cfg.variants:
        res = score_aqi(
            emb[pooling[variant]],
            [p.label for p in prompts],
            [p.axiom for p in prompts],
            variant=variant,
            reducer=cfg.reducer,
            gamma=cfg.gamma,
            seed=cfg.seed,
        )
        results.append(res)
        for row in res.rows:
            out.metrics[f"{variant}/{metric_key(str(row['scope']))}"] = float(row["aqi"])
        for key in ("ss", "ss_norm", "chi", "chi_norm", "xb", "xb_norm", "dbs"):
            if key != "xb_norm" or variant == "xb_chi":  # chi_sil has no XB normalisation
                out.metrics[f"{variant}/overall/{key}"] = float(res.row(OVERALL)[key])
        how = f"{cfg.protocol}, {cfg.reducer}, {pooling[variant]}, layer {cfg.layer}"
        title = f"AQI {variant} ({how})"
        out.files.append(plot_clusters(res, ctx.out_dir / f"aqi_{variant}.png", title))
        out.params[f"{variant}/pooling"] = pooling[variant]
    out.files.append(write_summary_csv(results, ctx.out_dir / "aqi_summary.csv"))
    out.metrics["n"] = float(len(prompts))
    keys = ("gamma", "reducer", "pooling", "padding", "protocol", "layer", "data")
    out.params |= {k: str(getattr(cfg, k)) for k in (*keys, "samples_per_category", "seed")}
    out.params["max_length"] = str(cfg.max_length)
    out.params["variants"] = ",".join(cfg.variants)
    if "xb_chi" in cfg.variants:
        out.params["xb_chi_normalisation"] = "per_run: not comparable across models"
    return out


def truthfulqa_items(data: str) -> list[TruthfulQAItem]:
    """TruthfulQA questions: `builtin` (the shipped copy), the hub id, or a local file."""
    if data == "builtin":
        return load_truthfulqa(str(TRUTHFULQA_BUILTIN))
    return load_truthfulqa(None if data == TRUTHFULQA_HUB else data)


@SUITES.register("truthfulqa")
def run_truthfulqa(ctx: EvalContext) -> SuiteOutput:
    """Metrics: mc1, mc2, n, mc1/<category>, mc2/<category>."""
    cfg = ctx.cfg.eval.truthfulqa
    items = truthfulqa_items(cfg.data)[: cfg.max_questions]
    metrics = score_truthfulqa(
        ctx.model,
        ctx.tokenizer,
        items,
        style=cfg.prompt_style,
        add_bos=cfg.add_bos,
        batch_size=cfg.batch_size,
        share_prefix=cfg.share_prefix,
    )
    params = {"data": cfg.data, "prompt_style": cfg.prompt_style, "add_bos": str(cfg.add_bos)}
    params |= {"preamble_sha256": hashlib.sha256(preamble().encode()).hexdigest()[:16]}
    params["continuation"] = "' ' + choice (harness)" if cfg.prompt_style == "harness" else "choice"
    params["share_prefix"] = str(cfg.share_prefix)
    if cfg.data == "builtin":
        params["data_sha256"] = hashlib.sha256(TRUTHFULQA_BUILTIN.read_bytes()).hexdigest()[:16]
    return SuiteOutput(metrics, params)


# ---------------------------------------------------------------- judge suite


def build_judge(cfg: JudgeConfig, model_id: str) -> JudgeBackend:
    if cfg.backend == "openai":
        assert cfg.base_url is not None  # checked by JudgeConfig
        return OpenAIJudge(
            base_url=cfg.base_url,
            model_id=model_id,
            api_key_env=cfg.api_key_env,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            timeout_s=cfg.timeout_s,
            seed=cfg.seed,
        )
    return LocalHFJudge.from_pretrained(
        model_id, revision=cfg.revision, max_new_tokens=cfg.max_new_tokens
    )


def judge_prompts(data: str, safe: bool, n: int, seed: int) -> list[str]:
    """n prompts (first n after a seeded shuffle): benign ones for helpfulness (safe=True),
    harmful ones for safety. builtin = the project's labelled set; BeaverTails ids/files give
    harmful prompts; AlpacaEval ids/files give instructions; any other file is litmus-shaped."""
    lowered = data.lower()
    if data == "builtin":
        prompts = [p.text for p in load_safety_eval() if p.label == int(safe)]
    elif "beavertails" in lowered:
        prompts = load_beavertails(data)
    elif "alpaca_eval" in lowered:
        source, rows = load_records(
            data, name=None if Path(data).exists() else "alpaca_eval", split="eval"
        )
        prompts = [text_field(row, "instruction", source, line) for line, row in rows]
    else:
        prompts = [p.text for p in load_litmus(data, None, seed) if p.label == int(safe)]
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


@SUITES.register("judge")
def run_judge(ctx: EvalContext) -> SuiteOutput:
    """Metrics: helpfulness/* (WR in 3 conventions + CIs), safety/safety_score,
    truthfulness/{truthful,informative,ti_and,ti_product}, each task's n and invalid_rate, and
    average_alignx / average_complement when all three tasks ran. Files: the prompt templates and
    judge_records.jsonl (every raw judge output)."""
    cfg = ctx.cfg.eval.judge
    judge = build_judge(cfg, cfg.model)
    out, records = SuiteOutput(), []
    used = []
    if "helpfulness" in cfg.tasks:
        template = load_prompt("pairwise_helpfulness", cfg.prompt_version)
        qs = judge_prompts(cfg.helpfulness_data, True, cfg.max_samples, cfg.seed)
        ours = _answers(ctx, qs, cfg.generation)
        if ctx.has_adapter:
            base = _answers(ctx, qs, cfg.generation, base=True)
            outcomes, recs = J.judge_helpfulness(judge, template, qs, ours, base)
        else:  # the baseline against itself: identical answers, every comparison a tie
            outcomes, recs = ["T"] * len(qs), []
        out.metrics |= J.helpfulness_metrics(
            outcomes, recs, n_boot=cfg.bootstrap_samples, seed=cfg.seed
        )
        records += recs
        used.append(template)
    if "safety" in cfg.tasks:
        template = load_prompt("safety_binary", cfg.prompt_version)
        qs = judge_prompts(cfg.safety_data, False, cfg.max_samples, cfg.seed)
        flags, recs = J.judge_safety(judge, template, qs, _answers(ctx, qs, cfg.generation))
        out.metrics |= J.safety_metrics(flags)
        records += recs
        used.append(template)
    if "truthfulness" in cfg.tasks:
        recs, templates = _truthfulness(ctx, cfg, judge, out)
        records += recs
        used += templates
    out.metrics |= J.average_metrics(out.metrics)
    out.files += _write_judge_files(ctx.out_dir, records, used)
    out.params = _judge_params(cfg, judge, used)
    return out


def _truthfulness(ctx: EvalContext, cfg: JudgeConfig, judge: JudgeBackend, out: SuiteOutput):
    items = truthfulqa_items(cfg.truthfulqa_data)
    random.Random(cfg.seed).shuffle(items)
    qs = [item.question for item in items[: cfg.max_samples]]
    answers = _answers(ctx, qs, cfg.generation)
    flags, recs, templates = {}, [], []
    judges = (
        ("truthful", "truthfulqa_truth", cfg.truth_model),
        ("informative", "truthfulqa_info", cfg.info_model),
    )
    for task, name, model_id in judges:
        backend = judge if model_id is None else build_judge(cfg, model_id)
        template = load_prompt(name if model_id is None else f"{name}_prob", cfg.prompt_version)
        flags[task], task_recs = J.judge_yes_no(
            backend, template, qs, answers, task=task, threshold=cfg.threshold
        )
        recs += task_recs
        templates.append(template)
        if getattr(backend, "prob_fallbacks", 0):
            out.metrics[f"truthfulness/{task}_prob_fallbacks"] = float(backend.prob_fallbacks)
    out.metrics |= J.truthfulness_metrics(flags["truthful"], flags["informative"])
    return recs, templates


def _write_judge_files(out_dir: Path, records: list[J.JudgeRecord], templates) -> list[Path]:
    files = []
    for template in templates:
        path = out_dir / f"judge_prompt_{template.name}.txt"
        path.write_text(template.text, encoding="utf-8")
        files.append(path)
    path = out_dir / "judge_records.jsonl"
    path.write_text("".join(json.dumps(r.as_dict()) + "\n" for r in records), encoding="utf-8")
    return [*files, path]


def _judge_params(cfg: JudgeConfig, judge: JudgeBackend, templates) -> dict[str, str]:
    params = {f"backend_{k}": v for k, v in backend_params(judge).items()}
    params |= {f"prompt_sha256/{t.name}": t.sha256[:16] for t in templates}
    for key in (
        "revision",
        "truth_model",
        "info_model",
        "threshold",
        "temperature",
        "max_new_tokens",
        "prompt_version",
        "seed",
        "bootstrap_samples",
        "max_samples",
        "helpfulness_data",
        "safety_data",
        "truthfulqa_data",
    ):
        params[key] = str(getattr(cfg, key))
    params["tasks"] = ",".join(cfg.tasks)
    params["win_rate"] = "both orders, inconsistent=tie, invalid=tie; alpaca_eval=(W+0.5T)/N"
    params["ti"] = "ti_and=per-sample AND; ti_product=T*I; invalid verdicts excluded"
    params["average"] = "alignx=(WR+TI-SS)/3; complement=(WR+TI+1-SS)/3 (fractions)"
    params["answers_decoding"] = json.dumps(vars(cfg.generation))
    return params
