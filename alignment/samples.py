"""What training changed, in answers: before/after samples and held-out refusal and answer rates.

"Before" is the base model (the policy with its LoRA adapters disabled, which is exactly the model
before training) and "after" the trained policy; both answer greedily, in batches, through the
chat template with no system turn (the model's default). The rates use the held-out prompt sets
of alignment/data/heldout.py, which no training pair contains, and the string-match refusal
detector of alignment/evaluation/refusal.py:

- refusal rate on HELDOUT_HARMFUL: the share of harmful requests the model declines;
- answer rate on HELDOUT_BENIGN: the share of ordinary requests it does not decline.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers import PreTrainedTokenizerBase

from alignment.data.heldout import (
    DEMO_BENIGN_PROMPTS,
    DEMO_PROMPTS,
    HELDOUT_BENIGN,
    HELDOUT_HARMFUL,
)
from alignment.evaluation.refusal import answer_rate, is_refusal, refusal_rate

# Refusals are decided in the first sentence, so short answers suffice for the rates.
RATE_MAX_NEW_TOKENS = 32
SAMPLE_MAX_NEW_TOKENS = 48
BATCH_SIZE = 32


@torch.no_grad()
def answers(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = BATCH_SIZE,
) -> list[str]:
    """Greedy answers to single-turn prompts, batched with left padding; order kept."""
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(model.device)
            ids = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = ids[:, enc["input_ids"].shape[1] :]
            out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return out


def _before_and_after(model, tokenizer, prompts: list[str], max_new_tokens: int):
    """(answers with adapters off, answers with adapters on), in eval mode with the KV cache."""
    was_training, use_cache = model.training, model.config.use_cache
    model.eval()
    model.config.use_cache = True
    off = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
    try:
        with off:
            before = answers(model, tokenizer, prompts, max_new_tokens)
        after = answers(model, tokenizer, prompts, max_new_tokens)
    finally:
        model.config.use_cache = use_cache
        model.train(was_training)
    return before, after


def before_after(model, tokenizer, n: int, max_new_tokens: int = SAMPLE_MAX_NEW_TOKENS):
    """n demo harmful prompts plus one benign prompt (to show the model still helps):
    [{"prompt", "before", "after"}]."""
    prompts = DEMO_PROMPTS[:n] + DEMO_BENIGN_PROMPTS[:1]
    before, after = _before_and_after(model, tokenizer, prompts, max_new_tokens)
    return [
        {"prompt": p, "before": b, "after": a}
        for p, b, a in zip(prompts, before, after, strict=True)
    ]


def heldout_rates(
    model,
    tokenizer,
    harmful: list[str] | None = None,
    benign: list[str] | None = None,
    max_new_tokens: int = RATE_MAX_NEW_TOKENS,
):
    """Refusal rate on the held-out harmful prompts and answer rate on the held-out benign ones
    (by default HELDOUT_*; alignment/data/heldout.py also has CHECK_*), before and after training.

    Returns (rates, rows): rates has keys refusal_rate_harmful_{before,after},
    answer_rate_benign_{before,after}, n_harmful, n_benign; rows holds every prompt with its
    answers and refusal verdicts (for the run's artifact).
    """
    harmful = HELDOUT_HARMFUL if harmful is None else harmful
    benign = HELDOUT_BENIGN if benign is None else benign
    prompts = harmful + benign
    before, after = _before_and_after(model, tokenizer, prompts, max_new_tokens)
    n = len(harmful)
    rates = {
        "refusal_rate_harmful_before": refusal_rate(before[:n]),
        "refusal_rate_harmful_after": refusal_rate(after[:n]),
        "answer_rate_benign_before": answer_rate(before[n:]),
        "answer_rate_benign_after": answer_rate(after[n:]),
        "n_harmful": n,
        "n_benign": len(benign),
    }
    rows = [
        {
            "kind": "harmful" if i < n else "benign",
            "prompt": p,
            "before": b,
            "after": a,
            "refused_before": is_refusal(b),
            "refused_after": is_refusal(a),
        }
        for i, (p, b, a) in enumerate(zip(prompts, before, after, strict=True))
    ]
    return rates, rows


def to_markdown(rows: list[dict[str, str]]) -> str:
    parts = ["# Answers before and after training (greedy)\n"]
    for r in rows:
        parts.append(f"## {r['prompt']}\n\n**before:** {r['before']}\n\n**after:** {r['after']}\n")
    return "\n".join(parts)
