"""Small text helpers shared by keyword search and the relevance decision."""

from __future__ import annotations

import re

STOPWORDS = frozenset("""a an and are as at be by can do does for from how i if in is it of on or our the to
we what when where which who why will with you your my me this that there their did much many should would
could about into than then them they any all long get need""".split())


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning (no stopwords, no single letters), in order, without repeats."""
    words = [w.strip(".-") for w in re.findall(r"[\w$%][\w$%.-]*", text.lower())]
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOPWORDS))


def term_coverage(query: str, passage: str) -> float:
    """Share of the query's content words found in the passage (5-letter prefixes: a crude stemmer,
    so 'approve' matches 'approval' and 'discounts' matches 'discount')."""
    wanted = {w[:5] for w in content_words(query)}
    if not wanted:
        return 0.0
    have = {w[:5] for w in content_words(passage)}
    return len(wanted & have) / len(wanted)
