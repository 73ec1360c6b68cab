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


@runtime_checkable
class JudgeBackend(Protocol):
    """Turns judge prompts into text; `prob_yes` gives P(" yes") as the next token, or None
    where the backend cannot (the caller then falls back to generated text and records it)."""

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

    def _texts(self, prompts: Sequence[JudgePrompt]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(
                p.messages(), tokenize=False, add_generation_prompt=True
            )
            if p.system is not None
            else p.user
            for p in prompts
        ]

    def _encode(self, texts: list[str]):
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"
        try:
            # Chat templates already carry their special tokens; raw prompts get the defaults.
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        return enc.to(next(self.model.parameters()).device)

    @torch.no_grad()
    def generate(self, prompts: Sequence[JudgePrompt]) -> list[str]:
        texts, out = self._texts(prompts), []
        for start in tqdm(range(0, len(texts), self.batch_size), desc="judging", leave=False):
            enc = self._encode(texts[start : start + self.batch_size])
            ids = self.model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = ids[:, enc["input_ids"].shape[1] :]
            out += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return out

    @torch.no_grad()
    def prob_yes(self, prompts: Sequence[JudgePrompt]) -> list[float]:
        """softmax(next-token logits)[" yes"] (the allenai judges' rule: yes iff >= 0.5)."""
        yes_id = self.tokenizer.encode(" yes", add_special_tokens=False)[0]
        texts, out = self._texts(prompts), []
        for start in tqdm(range(0, len(texts), self.batch_size), desc="judging", leave=False):
            enc = self._encode(texts[start : start + self.batch_size])
            logits = self.model(**enc).logits[:, -1].float()  # (B, V); left padding: last = next
            out += torch.softmax(logits, -1)[:, yes_id].tolist()
        return out


class OpenAIJudge:
    """Any OpenAI-compatible chat endpoint: POST {base_url}/chat/completions, temperature 0.

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

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = json.dumps(
            {"model": self.model_id, "temperature": self.temperature, "seed": self.seed} | payload
        )
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body.encode(), headers=headers
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

    def generate(self, prompts: Sequence[JudgePrompt]) -> list[str]:
        out = []
        for p in tqdm(prompts, desc="judging", leave=False):
            reply = self._post({"messages": p.messages(), "max_tokens": self.max_new_tokens})
            out.append(reply["choices"][0]["message"].get("content") or "")
        return out

    def prob_yes(self, prompts: Sequence[JudgePrompt]) -> list[float]:
        """From top-5 log-probs of the first token when the endpoint returns them; otherwise
        1.0/0.0 from the generated token (counted in `prob_fallbacks`)."""
        out = []
        for p in tqdm(prompts, desc="judging", leave=False):
            payload = {"messages": p.messages(), "max_tokens": 1, "logprobs": True}
            reply = self._post(payload | {"top_logprobs": 5})["choices"][0]
            content = (reply.get("logprobs") or {}).get("content") or []
            if content and content[0].get("top_logprobs"):
                top = content[0]["top_logprobs"]
                out.append(sum(math.exp(t["logprob"]) for t in top if _is_yes(t)))
            else:
                self.prob_fallbacks += 1
                text = (reply.get("message") or {}).get("content") or ""
                out.append(1.0 if text.strip().lower().startswith("yes") else 0.0)
        return out


def _is_yes(entry: dict) -> bool:
    return entry.get("token", "").strip().lower() == "yes"


def backend_params(backend: JudgeBackend) -> dict[str, str]:
    """What the run records about a backend (never a key)."""
    params = {"kind": backend.kind, "model": backend.model_id}
    if isinstance(backend, OpenAIJudge):
        params["base_url"] = backend.base_url
        params["api_key_env"] = str(backend.api_key_env)
    return params
