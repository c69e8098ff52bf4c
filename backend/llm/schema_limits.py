"""Bounds on a JSON schema a caller sends as `response_format`: the in-process model turns it into a llama.cpp
grammar (under the process-wide model lock), whose size grows with the schema's counts, so a `minItems` of
millions stalled every tenant's `local` calls and doubled the process's memory. Provider models get the same
bounds: one rule for every tier. Generous for real structured output (OpenAI's own limits are of this order)."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_SCHEMA_BYTES = 16 * 1024  # the schema's JSON
MAX_SCHEMA_DEPTH = 32  # nested JSON objects/arrays (a level of properties is two)
MAX_SCHEMA_PROPERTIES = 200  # `properties` entries, summed over the whole schema
MAX_SCHEMA_COUNT = 1000  # any one of COUNT_KEYWORDS, and any {n,m} in a `pattern`
MAX_SCHEMA_COUNT_TOTAL = 10_000  # all of them together: the grammar grows with their sum
COUNT_KEYWORDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
                  "minContains", "maxContains")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


class SchemaTooComplex(ValueError):
    def __init__(self, message: str, *, where: str) -> None:
        super().__init__(message)
        self.where = where


def check_schema(schema: Any, *, where: str = "schema") -> None:
    """Raise SchemaTooComplex naming the first bound `schema` passes (and where), else return."""
    try:
        size = len(json.dumps(schema, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError):
        raise SchemaTooComplex("the schema is not plain JSON (NaN, Infinity or a value JSON cannot hold)",
                               where=where) from None
    if size > MAX_SCHEMA_BYTES:
        raise SchemaTooComplex(f"the schema is {size:,} bytes of JSON; the limit is {MAX_SCHEMA_BYTES:,}",
                               where=where)
    totals = {"properties": 0, "counts": 0}
    _walk(schema, where, 0, totals)


def _walk(node: Any, path: str, depth: int, totals: dict[str, int]) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise SchemaTooComplex(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels", where=path)
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{path}[{i}]", depth + 1, totals)
        return
    if not isinstance(node, dict):
        return
    props = node.get("properties")
    if isinstance(props, dict):
        totals["properties"] += len(props)
        if totals["properties"] > MAX_SCHEMA_PROPERTIES:
            raise SchemaTooComplex(f"the schema has more than {MAX_SCHEMA_PROPERTIES} properties in all",
                                   where=f"{path}.properties")
    for key in COUNT_KEYWORDS:
        if key in node:
            _count(node[key], f"{path}.{key}", totals)
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        for match in _QUANTIFIER.finditer(pattern):
            for number in match.groups():
                if number:
                    _count(int(number), f"{path}.pattern", totals)
    for key, value in node.items():
        if isinstance(value, (dict, list)):
            _walk(value, f"{path}.{key}", depth + 1, totals)


def _count(value: Any, path: str, totals: dict[str, int]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # not a number: the schema is wrong, not expensive; the model's side refuses it
    if value > MAX_SCHEMA_COUNT:
        raise SchemaTooComplex(f"{value} is over the limit of {MAX_SCHEMA_COUNT} for counts in a schema",
                               where=path)
    totals["counts"] += max(0, int(value))
    if totals["counts"] > MAX_SCHEMA_COUNT_TOTAL:
        raise SchemaTooComplex(f"the schema's counts (minItems, maxLength, ...) add up to more than "
                               f"{MAX_SCHEMA_COUNT_TOTAL:,}", where=path)
