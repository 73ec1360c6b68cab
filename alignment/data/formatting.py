"""PreferenceExample -> token ids: chat-template rendering and the prompt/response split.

The response is whatever the template appends after the generation prompt (for ChatML:
"<response><|im_end|>\n"), so the loss covers the end-of-turn tokens too, and prompt tokens are
never labelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from transformers import PreTrainedTokenizerBase

from alignment.data.types import PreferenceExample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedExample:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]  # empty for SFT-only data
    h_w: int
    h_l: int

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


def build_messages(
    ex: PreferenceExample, use_instruction: bool, supports_system_role: bool
) -> list[dict[str, str]]:
    """Messages for the chat template: [system: I], then the prompt turns.

    Templates without a system role (Mistral, Gemma) get the instruction prepended to the first
    user turn instead, so the NoInstruct ablation differs from CITA only by the instruction text.
    """
    messages = [{"role": t.role, "content": t.content} for t in ex.prompt]
    if use_instruction and ex.instruction:
        if supports_system_role:
            messages.insert(0, {"role": "system", "content": ex.instruction})
        else:
            first = messages[0]
            messages[0] = {
                "role": first["role"],
                "content": f"{ex.instruction}\n\n{first['content']}",
            }
    return messages


def render(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], response: str | None
):
    """The prompt text (with the generation prompt) or the full text ending in `response`."""
    if response is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = [*messages, {"role": "assistant", "content": response}]
    return tokenizer.apply_chat_template(full, tokenize=False)


def _completion(prompt_text: str, full_text: str, origin: str) -> str:
    if not full_text.startswith(prompt_text):
        raise ValueError(
            f"{origin}: the chat template renders the prompt differently with and without the "
            "response; set model.chat_template to a template whose generation prompt is a prefix"
        )
    return full_text[len(prompt_text) :]


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[PreferenceExample],
    *,
    use_instruction: bool,
    supports_system_role: bool,
) -> list[EncodedExample]:
    """Render and tokenise every example (batched through the fast tokenizer)."""
    prompts, chosens, rejecteds = [], [], []
    for ex in examples:
        messages = build_messages(ex, use_instruction, supports_system_role)
        prompt_text = render(tokenizer, messages, None)
        prompts.append(prompt_text)
        chosens.append(_completion(prompt_text, render(tokenizer, messages, ex.chosen), ex.origin))
        rejecteds.append(
            _completion(prompt_text, render(tokenizer, messages, ex.rejected), ex.origin)
            if ex.rejected
            else ""
        )
    enc = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt_ids, chosen_ids, rejected_ids = enc(prompts), enc(chosens), enc(rejecteds)
    return [
        EncodedExample(p, c, r if ex.rejected else [], int(ex.h_w or 0), int(ex.h_l or 0))
        for ex, p, c, r in zip(examples, prompt_ids, chosen_ids, rejected_ids, strict=True)
    ]


def filter_long(encoded: list[EncodedExample], max_length: int) -> tuple[list[int], int]:
    """Indices of examples that fit in max_length tokens, and how many were dropped.

    Rows are dropped rather than truncated: a cut response would teach the model to stop
    mid-sentence, and a cut prompt changes what is being answered.
    """
    keep = [i for i, e in enumerate(encoded) if e.length <= max_length]
    return keep, len(encoded) - len(keep)


def truncate_long(
    encoded: list[EncodedExample], max_length: int
) -> tuple[list[EncodedExample], list[int], int]:
    """TRL 1.x's `keep_start` rule: each prompt + response keeps its first max_length tokens.

    Returns the (possibly cut) examples, the indices to keep, and how many rows were cut. A row
    whose prompt alone fills max_length has no response token left and is dropped (as TRL does).
    """
    out, keep, cut = [], [], 0
    for i, e in enumerate(encoded):
        room = max_length - len(e.prompt_ids)
        if e.length > max_length:
            cut += 1
            e = replace(e, chosen_ids=e.chosen_ids[:room], rejected_ids=e.rejected_ids[:room])
        out.append(e)
        if room > 0:
            keep.append(i)
    return out, keep, cut
