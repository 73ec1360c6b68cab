"""Secrets kept out of MLflow and out of the tracking journal: `redact` and `flatten`.

Everything the tracker writes (params, tags, run names, artifact paths) passes through `redact`
before it reaches the journal, so the journal on disk holds nothing that MLflow would not.
"""

from __future__ import annotations

import re
from typing import Any

from alignment.config.secrets import SECRET_KEY, is_env_ref, scrub

_URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@")


def redact(value: str) -> str:
    """Masks credentials in URIs, well-known key shapes and the value of any secret-named
    environment variable (the same rules as the config checks, alignment/config/secrets.py)."""
    return scrub(_URI_USERINFO.sub(r"\g<scheme>***@", value))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        elif SECRET_KEY.search(str(key)) and not is_env_ref(value):  # a name is no secret
            flat[name] = "***"
        else:
            flat[name] = redact(str(value))[:6000]
    return flat
