"""Dify's metadata_condition, evaluated against document metadata (title, filename, kb, ... and the
metadata given at upload). Returns the matching document ids, which then filter the vector search."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from backend.errors import Invalid

OPERATORS = ("contains", "not contains", "start with", "end with", "is", "is not", "in", "not in", "empty",
             "not empty", "=", "≠", "!=", ">", "<", "≥", ">=", "≤", "<=", "before", "after")


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# Numbers in a condition: finite and no larger than JSON numbers stay exact (2**53); 1e20, NaN and Infinity are
# refused (they reached datetime and float comparisons as 500s).
MAX_ABS_NUMBER = 2**53


def _date(value: Any) -> datetime | None:
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value)
        except (ValueError, OverflowError, OSError):  # a stored number far outside the calendar
            return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=None)


def _values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",")] if value is not None else []


def check(op: str, actual: Any, expected: Any) -> bool:
    if op == "empty":
        return actual in (None, "", [])
    if op == "not empty":
        return actual not in (None, "", [])
    if actual is None:
        return op in ("is not", "not contains", "not in", "≠", "!=")
    text = str(actual)
    if op == "contains":
        return str(expected).lower() in text.lower()
    if op == "not contains":
        return str(expected).lower() not in text.lower()
    if op == "start with":
        return text.lower().startswith(str(expected).lower())
    if op == "end with":
        return text.lower().endswith(str(expected).lower())
    if op == "is":
        return text == str(expected)
    if op == "is not":
        return text != str(expected)
    if op == "in":
        return text in _values(expected)
    if op == "not in":
        return text not in _values(expected)
    if op in ("before", "after"):
        a, e = _date(actual), _date(expected)
        if a is None or e is None:
            return False
        return a < e if op == "before" else a > e
    a, e = _num(actual), _num(expected)
    if a is None or e is None:
        return False
    return {"=": a == e, "≠": a != e, "!=": a != e, ">": a > e, "<": a < e, "≥": a >= e, ">=": a >= e,
            "≤": a <= e, "<=": a <= e}[op]


def validate(condition: dict) -> None:
    if not isinstance(condition, dict):
        raise Invalid("metadata_condition must be an object", code="invalid_metadata_condition")
    logical = str(condition.get("logical_operator") or "and").lower()
    if logical not in ("and", "or"):
        raise Invalid("metadata_condition.logical_operator must be 'and' or 'or'", code="invalid_metadata_condition")
    conditions = condition.get("conditions")
    if not isinstance(conditions, list):
        raise Invalid("metadata_condition.conditions must be a list", code="invalid_metadata_condition")
    for c in conditions:
        if not isinstance(c, dict) or not c.get("name"):
            raise Invalid("each condition needs a name", code="invalid_metadata_condition")
        if c.get("comparison_operator") not in OPERATORS:
            raise Invalid(f"unsupported comparison_operator {c.get('comparison_operator')!r}; supported: "
                          + ", ".join(OPERATORS), code="invalid_metadata_condition")
        value = c.get("value")
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if not math.isfinite(number) or abs(number) > MAX_ABS_NUMBER:
                raise Invalid(f"condition {str(c.get('name'))[:100]!r}: the value {number!r} is not a usable number "
                              f"(finite, at most {MAX_ABS_NUMBER:,} in size); send a smaller number or a string",
                              code="invalid_metadata_condition")


def matches(metadata: dict[str, Any], condition: dict) -> bool:
    logical = str(condition.get("logical_operator") or "and").lower()
    results = []
    for c in condition.get("conditions") or []:
        names = c["name"] if isinstance(c["name"], list) else [c["name"]]
        op, expected = c["comparison_operator"], c.get("value")
        # Dify sends `name` as a string or a list of field names; any named field may satisfy it.
        results.append(any(check(op, metadata.get(str(n)), expected) for n in names))
    if not results:
        return True
    return all(results) if logical == "and" else any(results)
