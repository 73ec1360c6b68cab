"""Secrets stay in environment variables: checks on config keys and values, and scrubbing.

A secret-bearing key (its name says token, secret, password, api key, credential or auth, e.g.
`eval.judge.api_key_env`) holds the NAME of an environment variable, never the secret, and its
name ends in `_env` (tests/test_secrets.py holds every schema to that). A value anywhere in the
config that looks like a credential (a known key prefix such as `sk-` or `hf_`, or the value of
a secret-named environment variable that is set) is rejected before Hydra writes anything, with
a message that names the key and never repeats the value: a value on the command line otherwise
ends up in the output directory's name, `.hydra/*.yaml`, train.log and MLflow.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

# Key names that carry secrets; word-bounded so `max_new_tokens` is not one.
SECRET_KEY = re.compile(
    r"(?i)(?:^|_)(?:token|secret|password|passwd|api_?key|credential|auth)(?:_|$)"
)
# Environment variable names that hold secrets (as tracking's redaction reads them).
SECRET_ENV = re.compile(r"(?i)(token|secret|passw|api[_-]?key|credential|auth)")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Well-known credential shapes: OpenAI/Anthropic, Hugging Face, GitHub, GitLab, Slack, AWS, Google.
KEY_PATTERN = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{16,}"
    r"|github_pat_\w{16,}|glpat-[\w-]{16,}|xox[abprs]-[\w-]{10,}|AKIA[0-9A-Z]{16}"
    r"|AIza[\w-]{30,})"
)
HIDDEN = "***"


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def looks_like_key(value: str) -> bool:
    """A known credential shape, or a long random-looking token (>= 20 chars, no spaces, at
    least 3.5 bits of entropy per character)."""
    if KEY_PATTERN.search(value):
        return True
    return len(value) >= 20 and " " not in value and _entropy(value) >= 3.5


def _secret_env_values() -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in os.environ.items()
        if len(value) >= 6 and SECRET_ENV.search(name)
    ]


def check_env_name(key: str, value: str | None) -> None:
    """`value` must name an environment variable (or be None). The message never shows it."""
    if value is None or ENV_NAME.fullmatch(value):
        return
    if looks_like_key(value) or any(secret == value for _, secret in _secret_env_values()):
        raise ValueError(
            f"{key} must be the NAME of the environment variable that holds the key (e.g. "
            "OPENAI_API_KEY), not the key itself: the value looks like a key (not shown)"
        )
    raise ValueError(
        f"{key} must be an environment variable name ([A-Z_][A-Z0-9_]*, e.g. OPENAI_API_KEY); "
        "got something else (not shown: it may be a secret)"
    )


def credential_problem(key: str, value: str) -> str | None:
    """Why `key=value` may not stand in a config (one line, without the value), or None."""
    name = key.rsplit(".", 1)[-1].lstrip("+~")
    if SECRET_KEY.search(name) and "${" not in value:
        for part in value.split(","):  # a sweep lists several values
            try:
                check_env_name(key.lstrip("+~"), part.strip() or None)
            except ValueError as err:
                return str(err)
        return None
    if KEY_PATTERN.search(value):
        return f"{key.lstrip('+~')}: the value looks like an API key or token (not shown); " + (
            "pass secrets through environment variables only"
        )
    for env, secret in _secret_env_values():
        if secret in value:
            return (
                f"{key.lstrip('+~')}: the value contains the secret held in ${env} (not shown); "
                "it would reach file names, logs and MLflow"
            )
    return None


def walk_strings(tree: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) for every string leaf of a nested dict/list container."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from walk_strings(value, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from walk_strings(value, f"{prefix}{i}.")
    elif isinstance(tree, str):
        yield prefix.rstrip("."), tree


def scrub(tree: Any) -> Any:
    """A copy of a nested container with secret-named keys masked and credential-looking text
    (known key shapes, values of secret-named environment variables) replaced by ***."""
    if isinstance(tree, dict):
        return {
            k: HIDDEN if SECRET_KEY.search(str(k)) and not is_env_ref(v) else scrub(v)
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [scrub(v) for v in tree]
    if isinstance(tree, str):
        text = KEY_PATTERN.sub(HIDDEN, tree)
        for _, secret in _secret_env_values():
            text = text.replace(secret, HIDDEN)
        return text
    return tree


def is_env_ref(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(ENV_NAME.fullmatch(value)))
