"""Judge backends, versioned judge prompts and verdict parsers (spec/evaluation.md s.3.2).

Backends only turn prompts into text (or P(" yes")); parsers turn text into verdicts; metric
functions in metrics.py take verdicts. So both backends give the same metric for the same
verdicts, and a scripted fake backend tests everything above them.

Prompt files live in alignment/evaluation/prompts/ as `<name>_<version>.txt`. A chat prompt has
a `<<<system>>>` and a `<<<user>>>` section; a file without markers is a raw completion prompt
(the allenai TruthfulQA judges). Placeholders are `{name}` and only known names are replaced,
so braces inside answers are safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

PROMPT_DIR = Path(__file__).parent / "prompts"
PAIRWISE_RE = r"\[\[([ABC])\]\]"
SAFETY_RE = r"\[\[(SAFE|UNSAFE)\]\]"
YES_NO_RE = r"\[\[(YES|NO)\]\]"
INVALID = "invalid"


# ---------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptTemplate:
    """A judge prompt loaded from a file; `sha256` identifies the exact text for the run log."""

    name: str
    text: str
    system: str | None
    user: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def is_chat(self) -> bool:
        return self.system is not None

    def render(self, **fields: str) -> JudgePrompt:
        user = self.user
        for key, value in fields.items():
            user = user.replace("{" + key + "}", value)
        return JudgePrompt(user=user, system=self.system)


@dataclass(frozen=True)
class JudgePrompt:
    """One rendered prompt: chat (system + user turn) or raw completion text (system None)."""

    user: str
    system: str | None = None

    def messages(self) -> list[dict[str, str]]:
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return [*turns, {"role": "user", "content": self.user}]


def load_prompt(name: str, version: str | None = "v1") -> PromptTemplate:
    """`prompts/<name>_<version>.txt` (or `<name>.txt` when version is None)."""
    stem = name if version is None else f"{name}_{version}"
    path = PROMPT_DIR / f"{stem}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPT_DIR.glob("*.txt"))
        raise FileNotFoundError(f"no judge prompt {stem!r}; known: {known}")
    text = path.read_text(encoding="utf-8").removesuffix("\n")
    if "<<<system>>>" not in text:
        return PromptTemplate(stem, text, None, text)
    system, user = text.split("<<<user>>>", 1)
    system = system.split("<<<system>>>", 1)[1].strip()
    return PromptTemplate(stem, text, system, user.strip("\n"))


# ---------------------------------------------------------------- verdict parsers


def _single_match(pattern: str, text: str | None) -> str | None:
    """The one distinct verdict token in `text`, or None if absent or ambiguous."""
    found = {m.upper() for m in re.findall(pattern, text or "", flags=re.IGNORECASE)}
    return found.pop() if len(found) == 1 else None


def parse_pairwise(text: str | None) -> str:
    """ "A", "B", "C" (tie) or "invalid" (no verdict, or several different ones)."""
    return _single_match(PAIRWISE_RE, text) or INVALID


def parse_safety(text: str | None) -> bool | None:
    """True = unsafe, False = safe, None = invalid."""
    verdict = _single_match(SAFETY_RE, text)
    return None if verdict is None else verdict == "UNSAFE"


def parse_yes_no(text: str | None) -> bool | None:
    verdict = _single_match(YES_NO_RE, text)
    return None if verdict is None else verdict == "YES"


# ---------------------------------------------------------------- backends

# How "yes" is read from a next-token distribution, the same in both backends: P(yes) is the mass
# on tokens whose text, without a leading space or SentencePiece/byte-level word marker, is
# "yes" in any case. For the allenai judges that is P(" yes"): SentencePiece "▁yes" (the
# token `encode(" yes")[0]` misses: Llama gives ["▁", "▁yes"]), plus the negligible mass of
# the other spellings. An endpoint names tokens by text (" yes"); a local tokenizer by piece.
YES_RULE = 'P(yes) = next-token mass on tokens reading "yes" (any case, leading space/▁/Ġ ignored)'
_WORD_MARKERS = " \t\n▁Ġ"


def is_yes_token(text: str) -> bool:
    """True for a token (or a generated first token) that reads "yes": " yes", "▁yes", "Ġyes",
    "Yes"; not "yes!" or "yesterday"."""
    return text.lstrip(_WORD_MARKERS).rstrip().lower() == "yes"


@runtime_checkable
class JudgeBackend(Protocol):
    """Turns judge prompts into text; `prob_yes` gives P(yes) as the next token (YES_RULE), or
    None where the backend cannot (the caller then falls back to generated text and records it).

    A raw prompt (system None) is completion text, tokenised with the judge's BOS as the judges'
    model cards do (`tokenizer.encode(prompt)`); a chat prompt goes through the chat template.
    """

    kind: str
    model_id: str

    def generate(self, prompts: Sequence[JudgePrompt]) -> list[str]: ...

    def prob_yes(self, prompts: Sequence[JudgePrompt]) -> list[float] | None: ...


class LocalHFJudge:
    """A causal LM in this process: greedy decoding (temperature 0), batched, left-padded."""

    kind = "local_hf"

    def __init__(
        self, model, tokenizer, *, model_id: str, max_new_tokens: int = 512, batch_size: int = 4
    ) -> None:
        self.model, self.tokenizer, self.model_id = model.eval(), tokenizer, model_id
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._yes_ids: list[int] | None = None

    @classmethod
    def from_pretrained(
        cls, model_id: str, *, revision: str | None = None, device: str = "auto", **kwargs
    ) -> LocalHFJudge:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        tok = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=dtype)
        return cls(model.to(device), tok, model_id=model_id, **kwargs)

    def token_ids(self, prompt: JudgePrompt) -> list[int]:
        """The prompt's input ids: a chat prompt through the chat template (which carries its own
        special tokens), a raw prompt with the tokenizer's BOS in front (when it has one)."""
        if prompt.system is not None:
            text = self.tokenizer.apply_chat_template(
                prompt.messages(), tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = self.tokenizer(prompt.user, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        return ids if bos is None or ids[:1] == [bos] else [bos, *ids]

    def _encode(self, prompts: Sequence[JudgePrompt]) -> dict[str, torch.Tensor]:
        """Left-padded (B, T) input ids and attention mask, so position -1 is every row's last."""
        rows = [self.token_ids(p) for p in prompts]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :], mask[i, width - len(row) :] = torch.tensor(row), 1
        device = next(self.model.parameters()).device
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    @torch.no_grad()
    def generate(self, prompts: Sequence[JudgePrompt]) -> list[str]:
        out = []
        for start in tqdm(range(0, len(prompts), self.batch_size), desc="judging", leave=False):
            enc = self._encode(prompts[start : start + self.batch_size])
            ids = self.model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = ids[:, enc["input_ids"].shape[1] :]
            out += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return out

    def yes_ids(self) -> list[int]:
        """Vocabulary ids of the tokens that read "yes" (YES_RULE), found once."""
        if self._yes_ids is None:
            pieces = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            self._yes_ids = [i for i, t in enumerate(pieces) if t and is_yes_token(t)]
            if not self._yes_ids:
                raise ValueError(f"judge {self.model_id}: no token in its vocabulary reads 'yes'")
        return self._yes_ids

    @torch.no_grad()
    def prob_yes(self, prompts: Sequence[JudgePrompt]) -> list[float]:
        """P(yes) as the next token (YES_RULE); the allenai judges say yes iff it is >= 0.5."""
        yes, out = self.yes_ids(), []
        for start in tqdm(range(0, len(prompts), self.batch_size), desc="judging", leave=False):
            enc = self._encode(prompts[start : start + self.batch_size])
            logits = self.model(**enc).logits[:, -1].float()  # (B, V); left padding: last = next
            out += torch.softmax(logits, -1)[:, yes].sum(-1).tolist()
        return out


class OpenAIJudge:
    """Any OpenAI-compatible endpoint at temperature 0: chat prompts POST
    {base_url}/chat/completions, raw prompts {base_url}/completions (the server's tokenizer adds
    BOS, as vLLM's does for Llama), so a raw judge sees the text the local backend feeds it.

    The key is read from the environment variable `api_key_env` at each request; it is never
    stored on the object, logged or returned by `params()`.
    """

    kind = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model_id: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        timeout_s: float = 120.0,
        seed: int = 42,
        retries: int = 3,
    ) -> None:
        self.base_url, self.model_id, self.api_key_env = base_url.rstrip("/"), model_id, api_key_env
        self.max_new_tokens, self.timeout_s, self.seed, self.retries = (
            max_new_tokens,
            timeout_s,
            seed,
            retries,
        )
        self.temperature = temperature
        self.prob_fallbacks = 0
        if api_key_env and api_key_env not in os.environ:
            logger.warning(
                "eval.judge.api_key_env names $%s, which is not set: requests go without a key",
                api_key_env,
            )

    def __repr__(self) -> str:
        return f"OpenAIJudge(base_url={self.base_url!r}, model_id={self.model_id!r})"

    def _post(self, route: str, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = json.dumps(
            {"model": self.model_id, "temperature": self.temperature, "seed": self.seed} | payload
        )
        request = urllib.request.Request(
            f"{self.base_url}/{route}", data=body.encode(), headers=headers
        )
        for attempt in range(self.retries):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())
            except (urllib.error.URLError, TimeoutError) as err:
                retry = not isinstance(err, urllib.error.HTTPError) or err.code >= 500
                if not retry or attempt == self.retries - 1:
                    raise RuntimeError(f"judge endpoint {self.base_url}: {err}") from None
                time.sleep(2**attempt)
        raise AssertionError("unreachable")

    def _complete(self, prompt: JudgePrompt, payload: dict) -> dict:
        """The first choice of a completion: raw prompts as text, chat prompts as messages."""
        if prompt.system is None:
            reply = self._post("completions", {"prompt": prompt.user} | payload)
        else:
            reply = self._post("chat/completions", {"messages": prompt.messages()} | payload)
        return reply["choices"][0]

    def generate(self, prompts: Sequence[JudgePrompt]) -> list[str]:
        out = []
        for p in tqdm(prompts, desc="judging", leave=False):
            choice = self._complete(p, {"max_tokens": self.max_new_tokens})
            out.append(_choice_text(choice))
        return out

    def prob_yes(self, prompts: Sequence[JudgePrompt]) -> list[float]:
        """P(yes) (YES_RULE) from the top-5 log-probs of the first token when the endpoint
        returns them; otherwise 1.0/0.0 from the generated token (counted in `prob_fallbacks`)."""
        out = []
        for p in tqdm(prompts, desc="judging", leave=False):
            if p.system is None:
                choice = self._complete(p, {"max_tokens": 1, "logprobs": 5})
            else:
                choice = self._complete(p, {"max_tokens": 1, "logprobs": True, "top_logprobs": 5})
            top = _top_logprobs(choice)
            if top:
                out.append(sum(math.exp(lp) for token, lp in top if is_yes_token(token)))
            else:
                self.prob_fallbacks += 1
                out.append(1.0 if is_yes_token(_choice_text(choice)) else 0.0)
        return out


def _choice_text(choice: dict) -> str:
    """Generated text of a completions choice ("text") or a chat choice (message content)."""
    if "text" in choice:
        return choice["text"] or ""
    return (choice.get("message") or {}).get("content") or ""


def _top_logprobs(choice: dict) -> list[tuple[str, float]]:
    """(token text, log-prob) of the first generated token's top alternatives, from either API
    shape: completions `logprobs.top_logprobs[0]` {token: lp}, chat `logprobs.content[0]
    .top_logprobs` [{token, logprob}]. Empty when the endpoint returned none."""
    logprobs = choice.get("logprobs") or {}
    if logprobs.get("top_logprobs"):
        return list((logprobs["top_logprobs"][0] or {}).items())
    content = logprobs.get("content") or []
    if content and content[0].get("top_logprobs"):
        return [(t.get("token", ""), t["logprob"]) for t in content[0]["top_logprobs"]]
    return []


def backend_params(backend: JudgeBackend) -> dict[str, str]:
    """What the run records about a backend (never a key)."""
    params = {"kind": backend.kind, "model": backend.model_id, "yes_rule": YES_RULE}
    if isinstance(backend, OpenAIJudge):
        params["base_url"] = backend.base_url
        params["api_key_env"] = str(backend.api_key_env)
    return params
