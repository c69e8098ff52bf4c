"""Reading the YAML configuration files (tenants.yaml, models.yaml, demo_users.yaml).

A mistake in one of them stops the start-up with one message `<absolute file>: <what>: <fix>` (the CLI prints it
as `error: …` and exits 2), never a traceback: an operator edits these files by hand, and a typo that is silently
ignored (`asistants:`, `token_per_day:`) is worse than one that refuses to start.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A configuration file that stops the start-up; the message is `<absolute file>: <what>: <fix>`."""


def read_yaml(path: Path, *, what: str) -> Any:
    """The parsed file, or a ConfigError naming the absolute path (and the line, for a syntax error)."""
    path = Path(path).absolute()
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found: create it, or set ATRIUM_CONFIG_DIR to the folder that holds it")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML at {where} ({problem}): fix the syntax there (indentation, "
                          "a missing ':' or a value containing ': ' that needs quotes)") from None


def unknown_key(key: object, valid: Iterable[str]) -> str:
    """`unknown key `x`: did you mean `y`?` (difflib), or the valid keys when none is close."""
    valid = list(valid)
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)  # the same cutoff as describe_errors
    if close:
        return f"unknown key `{key}`: did you mean `{close[0]}`?"
    return f"unknown key `{key}`: the valid keys here are {', '.join(valid) or 'none'}"


def check_keys(raw: dict, valid: Iterable[str], *, where: str) -> None:
    """Unknown top-level keys of a file's mapping (`where` = the file) are a ConfigError."""
    valid = list(valid)
    for key in raw:
        if key not in valid:
            raise ConfigError(f"{where}: {unknown_key(key, valid)}")


def describe_errors(exc: ValidationError, model: type[BaseModel], hints: dict[str, str] | None = None) -> str:
    """Every problem of a failed validation of `model`, `;`-separated, unknown keys first, each with its closest
    valid key. `hints`: top-level field -> what a valid value is, added once after its wrong values."""
    out: list[str] = []
    suggested: set[tuple] = set()  # a misspelt key's "missing" twin is the same mistake: said once
    errors = exc.errors()
    for err in filter(is_key_error, errors):
        loc = tuple(err["loc"])
        where = loc[:-1] if err["type"] == "extra_forbidden" else loc[:-2]  # a mapping key: (..., key, "[key]")
        key, valid = loc[len(where)], _keys_at(model, where)
        out.append(f"{_dotted(where) + ': ' if where else ''}{unknown_key(key, valid)}")
        suggested |= {(*where, close) for close in difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)}
    hinted: list[str] = []
    for err in errors:
        loc = tuple(err["loc"])
        if is_key_error(err) or loc in suggested:
            continue
        if err["type"] == "missing":  # its `input` is the whole enclosing mapping: not worth repeating
            out.append(f"{_dotted(loc)}: missing (it is required)")
        else:
            out.append(f"{_dotted(loc) or 'entry'}: {err['msg']} (got {err['input']!r})")
        if (hint := (hints or {}).get(str(loc[0]) if loc else "")) and hint not in hinted:
            hinted.append(hint)
    return "; ".join(out) + "".join(f" ({h})" for h in hinted)


def is_key_error(err: Any) -> bool:
    """A pydantic error about a key (unknown, or outside a fixed set of names) rather than a value."""
    return err["type"] == "extra_forbidden" or tuple(err["loc"])[-1:] == ("[key]",)


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the mapping at `loc` inside `model`: a nested model's fields, or a Literal-keyed
    dict's keys."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        elif get_origin(tp) in (list, dict):
            tp = get_args(tp)[-1]  # a list item or a mapping value
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    if get_origin(tp) is dict and get_origin(key := get_args(tp)[0]) is Literal:
        return [str(v) for v in get_args(key)]
    return []


def _unwrap(tp: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp
