"""Secrets kept out of MLflow and out of the tracking journal: `redact` and `flatten`.

Everything the tracker writes (params, tags, run names, artifact paths) passes through `redact`
before it reaches the journal, so the journal on disk holds nothing that MLflow would not.
"""

from __future__ import annotations

import os
import re
from typing import Any

_SECRET_NAME = re.compile(r"(?i)(token|secret|passw|api[_-]?key|credential|auth)")
# Config keys that carry secrets, word-bounded so that `max_new_tokens` is not one: the same
# pattern as alignment.config.secrets.SECRET_KEY (a test holds them equal), not imported because
# `python -m alignment.tracking sync` must not import Hydra.
SECRET_KEY = re.compile(
    r"(?i)(?:^|_)(?:token|secret|password|passwd|api_?key|credential|auth)(?:_|$)"
)
_URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@")


def redact(value: str) -> str:
    """Masks credentials in URIs and the value of any secret-looking environment variable."""
    value = _URI_USERINFO.sub(r"\g<scheme>***@", value)
    for name, secret in os.environ.items():
        if len(secret) >= 6 and _SECRET_NAME.search(name) and secret in value:
            value = value.replace(secret, "***")
    return value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        elif SECRET_KEY.search(str(key)):
            flat[name] = "***"
        else:
            flat[name] = redact(str(value))[:6000]
    return flat
