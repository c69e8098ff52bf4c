"""Lone UTF-16 surrogates: JSON allows "\\ud800", UTF-8 cannot encode it, so such text fails deep inside
(SQL, the vector store, the response encoder) unless it is refused at the edge."""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    # ASCII (most keys and much text) has none; else one scan in C, not a Python loop over every character.
    return not text.isascii() and _SURROGATE.search(text) is not None


def lone_surrogate_at(value: Any, path: str = "") -> str | None:
    """Where a lone surrogate hides in a decoded JSON value (a key or a string): its dotted path, or None."""
    if isinstance(value, str):
        return (path or "the value") if has_lone_surrogate(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        key = str(key)
        if has_lone_surrogate(key):
            return f"a key of {path}" if path else "a key"
        if isinstance(item, str) and not has_lone_surrogate(item):
            continue  # the common case, without building the path it would be named by
        if found := lone_surrogate_at(item, f"{path}{key}" if key.startswith("[") else f"{path}.{key}".lstrip(".")):
            return found
    return None
