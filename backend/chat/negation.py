"""Does an answer's sentence say the opposite of the statement that seems to support it?

Embedding similarity cannot see negation: "Personal expenses may be charged to a corporate card" is as close to
"Personal expenses must never be charged to a corporate card" as a paraphrase is. So the grounding check
(grounding_check.py) compares polarity clause by clause: each clause of the sentence is paired with the clause of
the statement that shares most of its words (or the whole statement, a list of short items), and they disagree
when one is negated ("not", "never", "cannot",
"must not", "prohibited" …; an even number of them cancels out) and the other is not. Limits are not negations:
"no more than 10%", "may not exceed 10%" and "cannot approve above 10%" against "up to 10%" say the same.
Kept simple on purpose: antonyms ("allowed" / "required") and swapped roles are not seen.
"""

from __future__ import annotations

import re

from backend.chat.grounded import coverage
from backend.knowledge.text import content_words

SHARED = 0.5  # a clause of the statement shares this share of the sentence clause's words: they are about one thing
_CLAUSE = re.compile(r"\s*(?:[,;:()]|(?<=[.!?])\s|\s[—–-]\s|\b(?:but|and|or|whereas|while|although|though|unless|"
                     r"except)\b)\s*", re.I)
_NEGATION = re.compile(r"\b(?:not|no|never|none|nobody|nothing|neither|nor|cannot|prohibited|forbidden|banned|"
                       r"disallowed)\b|n't\b", re.I)
# Bounds, not negations: "no more than", "not later than", "may not exceed".
_LIMIT = re.compile(r"\b(?:no|not)\s+(?:more|less|later|earlier|fewer|longer|greater|higher|lower)\s+than\b|"
                    r"(?:\bnot|\bnever|\bcannot|n't)\s+exceed\w*", re.I)
# "cannot approve above 10%" is "can approve up to 10%" when the other side states an upper bound.
_NOT_OVER = re.compile(r"(?:\bnot|\bnever|\bno|\bcannot|n't)\s+(?:\w+\s+){0,3}?(?:more|longer|later|greater|higher|"
                       r"above|over|beyond)\b", re.I)
_UPPER = re.compile(r"\b(?:up to|at most|maximum|max|or less|or fewer|under|below|within|limited to|capped at|"
                    r"no more than|not more than)\b", re.I)


def clauses(text: str) -> list[str]:
    """The clauses of a statement; the items a negated lead-in introduces ("The following are never reimbursed:
    fines, minibar charges, …") are negated with it."""
    head, colon, tail = text.partition(":")
    if colon and tail.strip() and negated(head):
        return _split(head) + [f"not {item}" for item in _split(tail)]
    return _split(text)


def _split(text: str) -> list[str]:
    return [c for c in _CLAUSE.split(text) if c and c.strip()]


def negated(clause: str, other: str = "") -> bool:
    """An odd number of negations, limits left out ("not prohibited" is allowed, "no more than" a limit)."""
    text = _LIMIT.sub(" limit ", clause)
    if _UPPER.search(other):
        text = _NOT_OVER.sub(" limit ", text)
    return len(_NEGATION.findall(text)) % 2 == 1


def agrees(sentence: str, statement: str) -> bool | None:
    """True when each clause of `sentence` about what `statement` says (most of the clause's words are in one of
    its clauses, or in the whole statement: a list's items are clauses of a few words) has the same polarity as
    it; False when one has the opposite; None when no clause is about what the statement says."""
    theirs = clauses(statement)
    verdicts = []
    for mine in clauses(sentence):
        if len(content_words(mine)) < 2:
            continue
        scored = [(coverage(mine, c), c) for c in theirs]
        best = max((s for s, _ in scored), default=0.0)
        if best >= SHARED:
            closest = [c for s, c in scored if s == best]
            verdicts.append(any(negated(mine, c) == negated(c, mine) for c in closest))
        elif coverage(mine, statement) >= SHARED:
            verdicts.append(negated(mine, statement) == negated(statement, mine))
    return all(verdicts) if verdicts else None
