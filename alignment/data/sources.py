"""Where examples come from: the `DATASETS` loaders (training), evaluation sets, and the transforms
applied after loading (train/validation split, the Factual-DPO flip, the flag check).

Every loader takes a `DatasetConfig`. When `cfg.path` names an existing file (or has a data-file
suffix) the file is read with `alignment.data.readers`; otherwise it is a hub id (or a local hub
snapshot directory) passed to `datasets.load_dataset(path, data_dir=, split=, revision=)`. Both
routes feed the same row parser, so offline tests on local files exercise the hub parsing code.
Only the first `cfg.max_examples` rows are read and parsed. Every bad value raises a one-line
`DataError` naming the file (or hub id), the row and the column. Each loader's docstring names
the columns it reads.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple

from alignment.config.data import DatasetConfig
from alignment.data.builtin import FACTUALITY_PREFS_PATH, SAFETY_EVAL_PATH, SAFETY_PREFS_PATH
from alignment.data.dialogue import DialogueError, split_pair
from alignment.data.readers import (
    column,
    load_records,
    optional_text,
    parse_flag,
    string_list,
    text_field,
)
from alignment.data.types import DataError, PreferenceExample, Turn
from alignment.registry import Registry

logger = logging.getLogger(__name__)

Loader = Callable[[DatasetConfig], list[PreferenceExample]]
RowParser = Callable[[dict[str, Any], str, int, DatasetConfig], PreferenceExample]
DATASETS: Registry[Loader] = Registry("dataset loader")

CANONICAL = ("prompt", "chosen", "rejected", "instruction", "h_w", "h_l", "category")
SAME_NAMES = {f: (f,) for f in CANONICAL}
AIXPERT_COLUMNS = SAME_NAMES | {
    "prompt": ("prompt", "question"),
    "h_w": ("h_w", "hw", "h_chosen"),
    "h_l": ("h_l", "hl", "h_rejected"),
}
# Dialogue loaders skip rows with malformed dialogues (logged); more than this share is an error.
MAX_SKIPPED_FRACTION = 0.5


def _load(cfg: DatasetConfig, default_path: str, parse: RowParser) -> list[PreferenceExample]:
    path, limit = cfg.path or default_path, cfg.max_examples
    kwargs = {"data_dir": cfg.data_dir, "split": cfg.split, "revision": cfg.revision}
    source, records = load_records(path, limit=limit, **kwargs)
    if not records:
        raise DataError(source, None, None, "no rows")
    examples, skipped = [], []
    for line, row in records:
        try:
            examples.append(parse(row, source, line, cfg))
        except DialogueError as err:
            skipped.append(err)
    n, total = len(skipped), len(records)
    if n > MAX_SKIPPED_FRACTION * total:
        problem = f"{n} of {total} rows have malformed dialogues; first: {skipped[0]}"
        raise DataError(source, None, None, problem)
    for err in skipped[:5]:
        logger.warning("skipping row: %s", err)
    if skipped:
        logger.warning("%s: skipped %d of %d rows (malformed dialogues)", source, n, total)
    logger.info("%s: loaded %d examples", source, len(examples))
    return examples


# --- training loaders ---------------------------------------------------------------------------


def _flat(
    row: dict[str, Any],
    source: str,
    line: int,
    cfg: DatasetConfig,
    *,
    names: dict[str, tuple[str, ...]],
    sft: bool = False,
    flags_required: bool = False,
) -> PreferenceExample:
    """A PreferenceExample from one row of flat columns; `names` maps field -> column synonyms."""
    prompt = text_field(row, names["prompt"], source, line).strip()
    chosen = text_field(row, names["chosen"], source, line).strip()
    rejected = "" if sft else text_field(row, names["rejected"], source, line).strip()
    flags = {}
    for field in ("h_w", "h_l"):
        if flags_required:
            column(row, names[field], source, line)  # raises when absent, listing the columns
        present = next((n for n in names[field] if n in row), field)
        flags[field] = parse_flag(row.get(present), source, line, present)
    return PreferenceExample(
        prompt=(Turn("user", prompt),),
        chosen=chosen,
        rejected=rejected,
        instruction=optional_text(row, names["instruction"], source, line),
        category=optional_text(row, names["category"], source, line),
        origin=f"{source}:{line}",
        **flags,
    )


@DATASETS.register("local")
def load_local(cfg: DatasetConfig) -> list[PreferenceExample]:
    """Any .jsonl/.json/.csv with flat columns; `cfg.columns` maps canonical fields to columns.

    Mapping `rejected` to "" declares SFT data without rejected responses.
    """
    if not cfg.path:
        raise DataError("dataset=local", None, None, "needs dataset.path=<a .jsonl/.json/.csv>")
    mapped = {f: getattr(cfg.columns, f) for f in CANONICAL}
    names = {f: (f if column is None else column,) for f, column in mapped.items()}
    sft = mapped["rejected"] == ""
    return _load(cfg, cfg.path, partial(_flat, names=names, sft=sft))


@DATASETS.register("safety_prefs")
def load_safety_prefs(cfg: DatasetConfig) -> list[PreferenceExample]:
    """The project's own safety pairs (assets/safety_prefs.jsonl when path is null)."""
    return _load(cfg, str(SAFETY_PREFS_PATH), partial(_flat, names=SAME_NAMES))


@DATASETS.register("factuality_prefs")
def load_factuality_prefs(cfg: DatasetConfig) -> list[PreferenceExample]:
    """The shipped factuality pairs (assets/, or `path`); aixpert_factuality's columns + flags."""
    return load_aixpert_factuality(replace(cfg, path=cfg.path or str(FACTUALITY_PREFS_PATH)))


@DATASETS.register("aixpert_factuality")
def load_aixpert_factuality(cfg: DatasetConfig) -> list[PreferenceExample]:
    """AIXpert pairs: prompt, chosen, rejected, h_w, h_l (1 = non-factual), as the AIXpert
    data-construction code writes them; synonyms question, hw/h_chosen, hl/h_rejected."""
    parse = partial(_flat, names=AIXPERT_COLUMNS, flags_required=True)
    return _load(cfg, "vector-institute/Factuality_Alignment", parse)


def _hh_row(row: dict[str, Any], source: str, line: int, cfg: DatasetConfig) -> PreferenceExample:
    pair = (text_field(row, f, source, line) for f in ("chosen", "rejected"))
    prompt, chosen, rejected = split_pair(*pair, source=source, row=line)
    return PreferenceExample(prompt, chosen, rejected, origin=f"{source}:{line}")


@DATASETS.register("hh_rlhf")
def load_hh_rlhf(cfg: DatasetConfig) -> list[PreferenceExample]:
    """Anthropic/hh-rlhf columns chosen, rejected: dialogues whose last Assistant turns differ."""
    return _load(cfg, "Anthropic/hh-rlhf", _hh_row)


def _instructions_row(
    row: dict[str, Any], source: str, line: int, cfg: DatasetConfig
) -> PreferenceExample:
    instruction = text_field(row, "Instruction generated", source, line).strip()
    fields = ("Accepted Response", "Rejected Response")
    good, bad = (text_field(row, f, source, line) for f in fields)
    prompt, chosen, rejected = split_pair(good, bad, source=source, row=line, fields=fields)
    origin = f"{source}:{line}"
    if cfg.prompt_source == "prompt_plus_instruction":
        # plan7: the instruction is folded into the single user turn, so no separate system turn.
        user = text_field(row, "Prompt", source, line).strip()
        prompt = (Turn("user", f"{user}\n\n{instruction}"),)
        return PreferenceExample(prompt, chosen, rejected, origin=origin)
    return PreferenceExample(prompt, chosen, rejected, instruction=instruction, origin=origin)


@DATASETS.register("alignment_instructions")
def load_alignment_instructions(cfg: DatasetConfig) -> list[PreferenceExample]:
    """Vaibhaav/alignment-instructions (CITA; spec/cita.md s.3): columns "Instruction generated"
    (I), "Prompt", and the dialogues "Accepted Response" and "Rejected Response".

    prompt_source "first_human" (loader_vaibhaav): the prompt is the Accepted Response dialogue
    before its last Assistant turn (the first Human turn for single-turn rows; earlier turns are
    kept for multi-turn rows). "prompt_plus_instruction" (plan7): Prompt + "\\n\\n" + I as one user
    turn and no system instruction.
    """
    return _load(cfg, "Vaibhaav/alignment-instructions", _instructions_row)


def _alpaca_row(
    row: dict[str, Any], source: str, line: int, cfg: DatasetConfig
) -> PreferenceExample:
    task = text_field(row, "instruction", source, line).strip()
    extra = optional_text(row, "input", source, line)
    user = f"{task}\n\n{extra.strip()}" if extra else task
    output = text_field(row, "output", source, line).strip()
    return PreferenceExample((Turn("user", user),), output, "", origin=f"{source}:{line}")


@DATASETS.register("alpaca")
def load_alpaca(cfg: DatasetConfig) -> list[PreferenceExample]:
    """tatsu-lab/alpaca for SFT: instruction (+ input) is the user turn, output is chosen."""
    return _load(cfg, "tatsu-lab/alpaca", _alpaca_row)


# --- transforms after loading -------------------------------------------------------------------


def split_train_val(
    examples: list[PreferenceExample], val_fraction: float, seed: int
) -> tuple[list[PreferenceExample], list[PreferenceExample]]:
    """Deterministic shuffled split, stratified by category (round(n * val_fraction) of each).

    The split depends only on `seed` and the examples, so every run of a grid sees the same split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = random.Random(seed)
    groups: dict[str, list[PreferenceExample]] = {}
    for ex in examples:
        groups.setdefault(ex.category or "", []).append(ex)
    train, val = [], []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        n_val = round(len(group) * val_fraction)
        val += group[:n_val]
        train += group[n_val:]
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def flip_unfactual_winners(
    examples: list[PreferenceExample],
) -> tuple[list[PreferenceExample], dict[str, int]]:
    """Swap chosen/rejected (and h_w/h_l) of every (h_w, h_l) = (1, 0) pair (factual_dpo.md s.2).

    Returns the new list and counts per bucket before the flip, plus "flipped" and "missing"
    (examples without both flags).
    """
    keys = ("bucket_0_1", "bucket_1_0", "bucket_0_0", "bucket_1_1", "flipped", "missing")
    counts = dict.fromkeys(keys, 0)
    out = []
    for ex in examples:
        if ex.h_w is None or ex.h_l is None:
            counts["missing"] += 1
        else:
            counts[f"bucket_{ex.h_w}_{ex.h_l}"] += 1
        if (ex.h_w, ex.h_l) == (1, 0):
            ex = replace(ex, chosen=ex.rejected, rejected=ex.chosen, h_w=0, h_l=1)
            counts["flipped"] += 1
        out.append(ex)
    return out, counts


def require_flags(examples: list[PreferenceExample], source: str) -> None:
    """Raise a DataError naming the first example without both h_w and h_l.

    Used by factual_dpo when delta != 0, where missing flags would silently train plain DPO.
    """
    for i, ex in enumerate(examples, start=1):
        for field in ("h_w", "h_l"):
            if getattr(ex, field) is None:
                where = ex.origin or f"{source}:{i}"
                need = "method factual_dpo with delta != 0 needs h_w and h_l on every row"
                raise DataError(where, None, field, f"missing; {need}")


# --- evaluation sets ----------------------------------------------------------------------------


class LabelledPrompt(NamedTuple):
    """A prompt with its axiom (category) and safety label: 1 = safe, 0 = unsafe (litmus)."""

    text: str
    axiom: str
    label: int


@dataclass(frozen=True)
class TruthfulQAItem:
    """One TruthfulQA question; in mc1/mc2 labels 1 marks a true choice."""

    question: str
    category: str
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]
    mc1_choices: tuple[str, ...]
    mc1_labels: tuple[int, ...]
    mc2_choices: tuple[str, ...]
    mc2_labels: tuple[int, ...]


def _targets(row: dict[str, Any], name: str, source: str, line: int) -> tuple[tuple, tuple]:
    value = column(row, name, source, line)
    if not isinstance(value, dict) or not {"choices", "labels"} <= set(value):
        raise DataError(source, line, name, "must be an object with 'choices' and 'labels'")
    choices = string_list(value, "choices", source, line)
    labels = tuple(parse_flag(v, source, line, name) for v in value["labels"])
    if not choices or len(labels) != len(choices) or None in labels or 1 not in labels:
        raise DataError(source, line, name, "needs equal-length choices and 0/1 labels, one 1+")
    if name == "mc1_targets" and sum(labels) != 1:
        raise DataError(source, line, name, f"must have exactly one true choice, has {sum(labels)}")
    return choices, labels


def _truthfulqa_item(row: dict[str, Any], source: str, line: int) -> TruthfulQAItem:
    # Positional, in TruthfulQAItem's field order.
    texts = [text_field(row, f, source, line) for f in ("question", "category", "best_answer")]
    lists = [string_list(row, f, source, line) for f in ("correct_answers", "incorrect_answers")]
    mc1, mc2 = (_targets(row, n, source, line) for n in ("mc1_targets", "mc2_targets"))
    return TruthfulQAItem(*texts, *lists, *mc1, *mc2)


def load_truthfulqa(path: str | None = None) -> list[TruthfulQAItem]:
    """TruthfulQA: a local file shaped like shared/data/truthfulqa-en.json, or (path None) the hub's
    truthfulqa/truthful_qa `multiple_choice` and `generation` validation sets joined by question."""
    if path is not None:
        source, records = load_records(path)
    else:
        hub = "truthfulqa/truthful_qa"
        source, records = load_records(hub, name="multiple_choice", split="validation")
        _, gen = load_records(hub, name="generation", split="validation")
        by_question = {row["question"]: row for _, row in gen}
        for line, row in records:
            extra = by_question.get(row["question"])
            if extra is None:
                raise DataError(source, line, "question", "not in the 'generation' config")
            row.update({k: v for k, v in extra.items() if k not in row})
    return [_truthfulqa_item(row, source, line) for line, row in records]


_TEXT_COLUMNS = ("input", "text", "prompt", "question")
_AXIOM_COLUMNS = ("axiom", "category", "axis")
_LABEL_COLUMNS = ("safety_label", "label", "is_safe", "safe")


def _safety_label(value: Any, source: str, line: int) -> int:
    """'safe'/'unsafe' (any case), or an int/bool read as 1/True = safe."""
    if isinstance(value, str) and value.strip().lower() in ("safe", "unsafe"):
        return int(value.strip().lower() == "safe")
    label = parse_flag(value, source, line, "safety_label")
    if label is None:
        raise DataError(source, line, "safety_label", "is empty")
    return label


def _labelled(row: dict[str, Any], source: str, line: int) -> LabelledPrompt:
    text = text_field(row, _TEXT_COLUMNS, source, line).strip()
    axiom = text_field(row, _AXIOM_COLUMNS, source, line).strip()
    label = _safety_label(column(row, _LABEL_COLUMNS, source, line), source, line)
    return LabelledPrompt(text, axiom, label)


def balanced_sample(
    prompts: list[LabelledPrompt], samples_per_category: int | None, seed: int
) -> list[LabelledPrompt]:
    """Up to `samples_per_category` prompts per (axiom, label), drawn with `seed`; order kept."""
    if samples_per_category is None:
        return list(prompts)
    rng, keep = random.Random(seed), set[int]()
    groups: dict[tuple[str, int], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault((p.axiom, p.label), []).append(i)
    for key in sorted(groups):
        keep.update(rng.sample(groups[key], min(samples_per_category, len(groups[key]))))
    return [p for i, p in enumerate(prompts) if i in keep]


def load_litmus(
    path: str | None = None, samples_per_category: int | None = 200, seed: int = 42
) -> list[LabelledPrompt]:
    """hasnat79/litmus (split train) or a local file: input, axiom, safety_label (spec/aqi.md
    s.1). samples_per_category: per (axiom, label); 200 is the Ecliptica "full" run, None: all."""
    source, records = load_records(path or "hasnat79/litmus", split="train")
    prompts = [_labelled(row, source, line) for line, row in records]
    return balanced_sample(prompts, samples_per_category, seed)


def load_safety_eval(
    samples_per_category: int | None = None, seed: int = 42
) -> list[LabelledPrompt]:
    """The project's own labelled safe/unsafe prompts (assets/safety_eval.jsonl), litmus-shaped."""
    return load_litmus(str(SAFETY_EVAL_PATH), samples_per_category, seed)


def load_beavertails(
    path: str | None = None, split: str = "30k_test", max_prompts: int | None = None
) -> list[str]:
    """Harmful prompts: PKU-Alignment/BeaverTails rows with is_safe false, deduplicated in
    order; max_prompts keeps the first that many distinct prompts (None keeps all)."""
    source, records = load_records(path or "PKU-Alignment/BeaverTails", split=split)
    prompts: dict[str, None] = {}
    for line, row in records:
        text = text_field(row, "prompt", source, line).strip()
        if parse_flag(column(row, "is_safe", source, line), source, line, "is_safe") == 0:
            prompts.setdefault(text)
    return list(prompts)[:max_prompts]


# The axis loaders of MAC and AlignX live in their own module and register into DATASETS too.
from alignment.data import axes  # noqa: E402, F401
