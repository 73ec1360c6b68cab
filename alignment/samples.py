"""Before/after answers: the same prompts answered by the base model (adapters disabled) and by
the trained policy, greedy, so the effect of training is visible at a glance."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from alignment.data.builtin import DEMO_BENIGN_PROMPTS, DEMO_PROMPTS


@torch.no_grad()
def answer(model, tokenizer: PreTrainedTokenizerBase, prompt: str, max_new_tokens: int) -> str:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(model.device)
    out = model.generate(
        **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def before_after(model, tokenizer, n: int, max_new_tokens: int = 48) -> list[dict[str, str]]:
    """n held-out harmful prompts plus one benign prompt (to show the model still helps)."""
    prompts = DEMO_PROMPTS[:n] + DEMO_BENIGN_PROMPTS[:1]
    was_training = model.training
    model.eval()
    model.config.use_cache = True
    rows = []
    for prompt in prompts:
        with model.disable_adapter():
            before = answer(model, tokenizer, prompt, max_new_tokens)
        rows.append(
            {
                "prompt": prompt,
                "before": before,
                "after": answer(model, tokenizer, prompt, max_new_tokens),
            }
        )
    model.config.use_cache = False
    model.train(was_training)
    return rows


def to_markdown(rows: list[dict[str, str]]) -> str:
    parts = ["# Answers before and after training (greedy)\n"]
    for r in rows:
        parts.append(f"## {r['prompt']}\n\n**before:** {r['before']}\n\n**after:** {r['after']}\n")
    return "\n".join(parts)
