"""TruthfulQA MC1/MC2 by teacher-forced log-likelihood, lm-evaluation-harness compatible.

Context (harness style): the six-shot QA preamble (prompts/truthfulqa_qa_preamble.txt, the text
of truthfulqa_mc1.yaml) + "\\n\\nQ: {question}\\nA:"; continuation " " + choice. As in the
harness's `_encode_pair`, trailing whitespace of the context moves to the continuation, and the
continuation tokens are those of tokenize(context + continuation) after the first
len(tokenize(context)) tokens, without special tokens (`add_bos` prepends BOS to the context).
Each choice's score is its TOTAL log-probability (no length normalisation), computed by
`sequence_logps`, the function training uses.
Chat style: the same text as one user turn through the chat template; the continuation is the
choice itself after the generation prompt.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from alignment.data.sources import TruthfulQAItem
from alignment.evaluation.judges import load_prompt
from alignment.evaluation.metrics import mc1, mc2, metric_key
from alignment.losses.logprobs import sequence_logps

logger = logging.getLogger(__name__)


def preamble() -> str:
    return load_prompt("truthfulqa_qa_preamble", None).text


def build_request(tokenizer, question: str, choice: str, style: str) -> tuple[str, str]:
    """(context, continuation) text for one answer choice."""
    text = f"{preamble()}\n\nQ: {question}\nA:"
    if style == "harness":
        return text, " " + choice
    if style == "chat":
        messages = [{"role": "user", "content": text}]
        context = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return context, choice
    raise ValueError(f"prompt_style must be harness or chat, got {style!r}")


def encode_pair(
    tokenizer, context: str, continuation: str, add_bos: bool = False
) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation) by the harness rule (see the module docstring)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = whole[len(ctx) :]
    if add_bos:
        if tokenizer.bos_token_id is None:
            raise ValueError("add_bos=true but the tokenizer has no BOS token")
        ctx = [tokenizer.bos_token_id, *ctx]
    if not cont:
        raise ValueError(f"empty continuation for {continuation!r}")
    return ctx, cont


@torch.no_grad()
def loglikelihoods(
    model, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 8
) -> list[float]:
    """Total log p(continuation | context) per (context ids, continuation ids) pair.

    Pairs are batched longest first and right-padded; labels mask context and padding (-100).
    """
    device = next(model.parameters()).device
    order = sorted(range(len(pairs)), key=lambda i: -sum(map(len, pairs[i])))
    out = [0.0] * len(pairs)
    for start in tqdm(range(0, len(order), batch_size), desc="TruthfulQA MC", leave=False):
        idx = order[start : start + batch_size]
        width = max(len(pairs[i][0]) + len(pairs[i][1]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        labels = torch.full_like(ids, -100)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ctx, cont = pairs[i]
            n = len(ctx) + len(cont)
            ids[row, :n] = torch.tensor(ctx + cont)
            labels[row, len(ctx) : n] = torch.tensor(cont)
            mask[row, :n] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logps, _ = sequence_logps(logits, labels.to(device))  # (B,)
        for row, i in enumerate(idx):
            out[i] = float(logps[row])
    return out


def score_truthfulqa(
    model,
    tokenizer,
    items: Sequence[TruthfulQAItem],
    *,
    style: str = "harness",
    add_bos: bool = False,
    batch_size: int = 8,
) -> dict[str, float]:
    """MC1, MC2 (means over questions), per category, and the question count.

    Keys: "mc1", "mc2", "n", "mc1/<category>", "mc2/<category>" (category sanitised for MLflow).
    """
    pairs, spans = [], []
    for item in items:
        for choices in (item.mc1_choices, item.mc2_choices):
            start = len(pairs)
            for choice in choices:
                context, continuation = build_request(tokenizer, item.question, choice, style)
                pairs.append(encode_pair(tokenizer, context, continuation, add_bos))
            spans.append((start, len(pairs)))
    was_training = model.training
    model.eval()
    try:
        lls = loglikelihoods(model, pairs, tokenizer.pad_token_id, batch_size)
    finally:
        model.train(was_training)
    per_cat: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for k, item in enumerate(items):
        (a, b), (c, d) = spans[2 * k], spans[2 * k + 1]
        scores = (mc1(lls[a:b], item.mc1_labels), mc2(lls[c:d], item.mc2_labels))
        per_cat[item.category].append(scores)
    every = [s for group in per_cat.values() for s in group]
    out = {
        "mc1": float(np.mean([s[0] for s in every])),
        "mc2": float(np.mean([s[1] for s in every])),
    }
    out["n"] = float(len(every))
    for category, group in sorted(per_cat.items()):
        name = metric_key(category)
        out[f"mc1/{name}"] = float(np.mean([s[0] for s in group]))
        out[f"mc2/{name}"] = float(np.mean([s[1] for s in group]))
    return out
