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
Scoring runs the preamble shared by every request once, each question's context once and each
distinct choice once on its question's key/value cache (`shared_prefix_loglikelihoods`, >10x
faster on CPU); `share_prefix=False` runs every request in full (`loglikelihoods`). Both give the
same log-likelihoods up to float rounding.

NOTICE: alignment/data/assets/truthfulqa_en.jsonl.gz (TRUTHFULQA_BUILTIN, the suite's default
data) is TruthfulQA (Lin, Hilton and Evans, 2022; https://github.com/sylinrl/TruthfulQA,
Apache-2.0) as published in hitz-zentroa/truthfulqa-multi `data/en/validation.json`
(Apache-2.0), reduced to the fields the evaluation reads by scripts/make_truthfulqa_asset.py.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from alignment.data.builtin import asset_path
from alignment.data.sources import TruthfulQAItem
from alignment.evaluation.judges import load_prompt
from alignment.evaluation.metrics import mc1, mc2, metric_key
from alignment.losses.logprobs import sequence_logps

logger = logging.getLogger(__name__)

TRUTHFULQA_BUILTIN = asset_path("truthfulqa_en.jsonl.gz")


@functools.cache
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


def _right_padded(
    rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, labels, attention mask), each (B, T): context + continuation per row, right
    padded; labels hold the continuation tokens and -100 elsewhere."""
    width = max(len(ctx) + len(cont) for ctx, cont in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for row, (ctx, cont) in enumerate(rows):
        n = len(ctx) + len(cont)
        ids[row, :n] = torch.tensor([*ctx, *cont])
        labels[row, len(ctx) : n] = torch.tensor(list(cont))
        mask[row, :n] = 1
    return ids, labels, mask


@torch.no_grad()
def loglikelihoods(
    model, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 8
) -> list[float]:
    """Total log p(continuation | context) per (context ids, continuation ids) pair, every pair
    run in full: the harness's way, and what `shared_prefix_loglikelihoods` is tested against.

    Pairs are batched longest first and right-padded; labels mask context and padding (-100).
    """
    device = next(model.parameters()).device
    order = sorted(range(len(pairs)), key=lambda i: -sum(map(len, pairs[i])))
    out = [0.0] * len(pairs)
    for start in tqdm(range(0, len(order), batch_size), desc="TruthfulQA MC", leave=False):
        idx = order[start : start + batch_size]
        ids, labels, mask = _right_padded([pairs[i] for i in idx], pad_id)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logps, _ = sequence_logps(logits, labels.to(device))  # (B,)
        for row, i in enumerate(idx):
            out[i] = float(logps[row])
    return out


def shared_prefix_length(contexts: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix common to every context, capped one token short of the
    shortest context, so each row keeps a context token to predict its first answer token."""
    if not contexts:
        return 0
    first, cap = contexts[0], min(len(c) for c in contexts) - 1
    n = 0
    while n < cap and all(c[n] == first[n] for c in contexts):
        n += 1
    return n


def _with_cache(model, ids, mask, cache, n_past: torch.Tensor, **kwargs):
    """Forward of rows `ids` (B, T) after a key/value `cache` (None = nothing before them) in
    which row b has `n_past[b]` real positions; `mask` (B, cached + T) marks every real position
    of cache and rows. Position ids continue from each row's real past (padding takes the first
    ones and is masked), so every real token is encoded exactly as in its full sequence."""
    device = next(model.parameters()).device
    real = mask[:, -ids.shape[1] :]
    positions = n_past[:, None] + (real.cumsum(1) - 1).clamp(min=0)
    if cache is not None:
        kwargs["cache"] = cache
    return model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        **kwargs,
    )


def _repeat(cache, index: torch.Tensor):
    """A copy of `cache` holding its rows `index` (B,) in that order; None stays None."""
    if cache is None:
        return None
    cache = copy.deepcopy(cache)
    cache.batch_select_indices(index.to(cache.layers[0].keys.device))
    return cache


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (B, T): rows left-padded, so position -1 is every row's last token."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row))
        mask[i, width - len(row) :] = 1
    return ids, mask


@torch.no_grad()
def shared_prefix_loglikelihoods(
    model, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 8
) -> list[float]:
    """The values of `loglikelihoods` (up to float rounding) for a fraction of the work.

    1. The token prefix shared by every context (the six-shot preamble, ~90% of each request)
       runs once; its key/value cache is copied into the batches instead of being recomputed.
    2. Each distinct context (one per question) runs once more, for its remaining tokens, on
       top of that cache, 4 x `batch_size` questions a batch (these rows are ~10x shorter than a
       full request), longest first; its last position gives each choice's first token.
    3. The distinct continuations of those questions (MC1's choices are MC2's in the standard
       data) run for the rest of their tokens, each row on top of its own question's cache,
       4 x `batch_size` rows a batch, longest first.
    Padding (inside the cache and in the rows) is masked, and position ids continue from each
    row's real past, so every real token sees exactly what it sees in the full sequence.
    """
    device = next(model.parameters()).device
    groups: dict[tuple, dict[tuple, None]] = {}  # context -> its distinct continuations
    for ctx, cont in pairs:
        groups.setdefault(tuple(ctx), {})[tuple(cont)] = None
    contexts = sorted(groups, key=len, reverse=True)
    n_prefix, rows = shared_prefix_length(contexts), 4 * batch_size
    prefix = None
    if n_prefix:
        ids = torch.tensor([contexts[0][:n_prefix]], device=device)
        prefix = model(input_ids=ids, use_cache=True).cache
    scores: dict[tuple, float] = {}
    for start in tqdm(range(0, len(contexts), rows), desc="TruthfulQA MC", leave=False):
        chunk = contexts[start : start + rows]
        ids, mask = _left_padded([c[n_prefix:] for c in chunk], pad_id)
        mask = torch.cat([torch.ones(len(chunk), n_prefix, dtype=mask.dtype), mask], 1)
        cache = _repeat(prefix, torch.zeros(len(chunk), dtype=torch.long))
        n_past = torch.full((len(chunk),), n_prefix)
        out = _with_cache(model, ids, mask, cache, n_past, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), -1)  # (C, V): first answer tokens
        conts = sorted(((q, x) for q, c in enumerate(chunk) for x in groups[c]),
                       key=lambda qx: -len(qx[1]))  # fmt: skip
        for k in range(0, len(conts), rows):
            scores |= _continuations(
                model, out.cache, mask, first, chunk, conts[k : k + rows], pad_id
            )
    return [scores[(tuple(c), tuple(x))] for c, x in pairs]


def _continuations(model, cache, mask, first, chunk, batch, pad_id: int) -> dict[tuple, float]:
    """log p(continuation | context) of `batch` [(question index, continuation ids)]: the first
    token's from `first`, the others' from one forward of the continuations on their questions'
    caches (`cache` and `mask` (C, cached) of stage 2)."""
    q = torch.tensor([i for i, _ in batch])
    rest = torch.zeros(len(batch))
    if max(len(x) for _, x in batch) > 1:
        ids, labels, cont_mask = _right_padded([((), x) for _, x in batch], pad_id)
        full_mask = torch.cat([mask[q], cont_mask], 1)
        out = _with_cache(model, ids, full_mask, _repeat(cache, q), mask[q].sum(1))
        rest, _ = sequence_logps(out.logits, labels.to(out.logits.device))  # (B,)
    return {
        (chunk[i], x): float(first[i, x[0]]) + float(rest[row]) for row, (i, x) in enumerate(batch)
    }


def score_truthfulqa(
    model,
    tokenizer,
    items: Sequence[TruthfulQAItem],
    *,
    style: str = "harness",
    add_bos: bool = False,
    batch_size: int = 8,
    share_prefix: bool = True,
) -> dict[str, float]:
    """MC1, MC2 (means over questions), per category, and the question count.

    share_prefix: score with `shared_prefix_loglikelihoods` (default) or run every request in
    full with `loglikelihoods`; both give the same log-likelihoods up to float rounding.

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
        score = shared_prefix_loglikelihoods if share_prefix else loglikelihoods
        lls = score(model, pairs, tokenizer.pad_token_id, batch_size)
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
