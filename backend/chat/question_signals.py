"""What a question's wording says beyond its meaning: the amounts it names (does a rule's threshold cover them?)
and the questions it joins ("What counts as a SEV1 and who gets paged?" asks two).

A threshold list ("Up to 10%: …", "More than 20%: …", "$25,000.01 to $100,000: …") is where the embedder is
weakest — 25% and 20% look alike to it — and where a wrong line is a wrong answer, so the grounded answer
(backend/chat/grounded.py) ranks a statement whose bounds hold the question's amount above one whose bounds
exclude it.
"""

from __future__ import annotations

import re

_AMOUNT = re.compile(r"(\$|€|£)?\s?(\d[\d,]*(?:\.\d+)?)\s?(%|k\b)?", re.I)
_NUM = r"(\$|€|£)?\s?(\d[\d,]*(?:\.\d+)?)\s?(%)?"
_LOWER = re.compile(r"(?:more than|above|over|greater than|exceeds?|at least)\s+" + _NUM, re.I)
_UPPER = re.compile(r"(?:up to|below|under|less than|at most|no more than)\s+" + _NUM, re.I)
_RANGE = re.compile(r"(\$|€|£)?(\d[\d,]*(?:\.\d+)?)\s?(%)?\s?(?:to|–|-)\s?(\$|€|£)?(\d[\d,]*(?:\.\d+)?)\s?(%)?")
_NAME = re.compile(r"\b(?:[A-Z][A-Z0-9-]+|[A-Za-z]+\d[\w-]*)\b")  # SEV1, API, BD6, ISO-27001
# A message is searched once whole, then once per joined question: only the first few are searched on their own
# (a crafted message joining hundreds would otherwise be hundreds of searches and embeddings at no token cost).
MAX_PARTS = 4
MAX_NAMES = 6
_JOINED = re.compile(r",?\s+(?:and|or)\s+(?=(?:who|what|when|where|which|how|why|whom)\b)", re.I)


def _kind(currency: str | None, percent: str | None) -> str:
    return "%" if percent else "$" if currency else ""


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def amounts(text: str) -> list[tuple[str, float]]:
    """The amounts a question names, with their kind (`%`, `$` or `` for a bare number)."""
    out = []
    for m in _AMOUNT.finditer(text):
        value = _value(m.group(2))
        if m.group(3) and m.group(3).lower() == "k":
            value *= 1000
        kind = _kind(m.group(1), m.group(3) if m.group(3) == "%" else None)
        before = text[max(0, m.start() - 14):m.start()].lower()
        if re.search(r"(above|over|more than|exceeding)\s*$", before):
            value += 0.01  # "above $5,000" is the line "Above $5,000", not "$500.01 to $5,000"
        elif re.search(r"(below|under|less than)\s*$", before):
            value -= 0.01
        if kind:  # a bare number ("3-year", "SEV1") is not an amount a threshold speaks of
            out.append((kind, value))
    return out


def bounds(text: str) -> list[tuple[str, float, float]]:
    """The ranges a statement's thresholds state: (kind, low, high), low exclusive ("more than 20%")."""
    out = []
    for m in _RANGE.finditer(text):
        kind = _kind(m.group(1) or m.group(4), m.group(3) or m.group(6))
        low, high = _value(m.group(2)), _value(m.group(5))
        if kind and low < high:
            out.append((kind, low - 0.01, high))
    for m in _LOWER.finditer(text):
        if kind := _kind(m.group(1), m.group(3)):
            out.append((kind, _value(m.group(2)), float("inf")))
    for m in _UPPER.finditer(text):
        if kind := _kind(m.group(1), m.group(3)):
            out.append((kind, float("-inf"), _value(m.group(2))))
    return out


def threshold_fit(question: str, statement: str) -> float:
    """+1 when the statement's thresholds hold every amount of the question of their kind, -1 when one excludes
    an amount, 0 when either names no amount or threshold of the same kind. A statement with both a lower and an
    upper bound ("more than 10% and up to 20%") must hold the amount within both."""
    asked = amounts(question)
    if not asked:
        return 0.0
    stated = bounds(statement)
    fit = 0.0
    for kind, value in asked:
        same = [(lo, hi) for k, lo, hi in stated if k == kind]
        if not same:
            continue
        if all(lo < value <= hi for lo, hi in same):
            fit = max(fit, 1.0)
        else:
            return -1.0
    return fit


def sub_questions(question: str) -> list[str]:
    """The questions one message joins, each with the names the others give ("What counts as a SEV1 and who gets
    paged?" -> "What counts as a SEV1?", "who gets paged (SEV1)?"); one item when it asks one."""
    parts = [p.strip(" ,?") for p in _JOINED.split(question) if p.strip(" ,?")][:MAX_PARTS]
    if len(parts) < 2:
        return [question]
    names = list(dict.fromkeys(_NAME.findall(" ".join(parts))))[:MAX_NAMES]
    out = []
    for part in parts:
        missing = [n for n in names if n not in part]
        out.append(part + (f" ({' '.join(missing)})" if missing else "") + "?")
    return out
