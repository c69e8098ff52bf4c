"""The grounding check: is each sentence of a generated answer supported by the passages it cites?

A sentence is supported when a statement of its cited passages (all the turn's passages when it cites none) says
the same — embedding similarity with the knowledge base's own embedder, or a weaker similarity with most of its
words found in the passages — and every number it states is one the passages state: an invented number ("a
37% bonus", "within 24 hours" for a 5-minute rule) makes the sentence unsupported whatever its wording —
and it does not say the opposite of the statements that support it ("may be charged" where the passage says "must
never be charged": negation.py), which embedding similarity cannot see. A supported sentence keeps the passage
whose statement supports it (`passage`): the answer's inline [n] marker for a sentence the model left unmarked.
Sentences that assert nothing (fewer than three content words: "Sure!", "I hope this helps.") are not counted.
The answer's score is the share of its counted sentences that are supported (1.0 when none is counted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from backend.chat.grounded import Embed
from backend.chat.negation import agrees
from backend.chat.passage_units import Unit, clean, split_sentences, strip_markers, units
from backend.knowledge.retrieval import Citation
from backend.knowledge.text import content_words, term_coverage

SIMILAR = 0.62  # this similar to one statement of its passages: supported
SIMILAR_WITH_WORDS = 0.45  # … or this similar with WORDS of its words in the passages
WORDS = 0.6
MIN_WORDS = 3
NEAREST = 3  # a sentence's numbers must be stated by one of its this many nearest statements
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:\s?(%|[A-Za-z]+))?")
_UNITS = {"percent": "%", "per": "", "pm": "", "am": ""}
_CODE = re.compile(r"\b[A-Za-z]+\d[\w-]*")  # SEV1, BD6, v2: a name with a number is checked like a number
_CITED = re.compile(r"\[(\d+)\]")


@dataclass
class SentenceCheck:
    text: str
    supported: bool
    counted: bool
    similarity: float
    reason: str = ""
    passage: int | None = None  # the index of the citation whose statement supports it (a supported sentence)


@dataclass
class Check:
    sentences: list[SentenceCheck] = field(default_factory=list)

    @property
    def counted(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if s.counted]

    @property
    def score(self) -> float:
        counted = self.counted
        return round(sum(s.supported for s in counted) / len(counted), 3) if counted else 1.0

    @property
    def unsupported(self) -> list[SentenceCheck]:
        return [s for s in self.counted if not s.supported]


def numbers(text: str) -> dict[tuple[str, str], str]:
    """The numbers a text states with the unit word that follows them (as written, by normalised value and unit
    stem): ("3000", "") for "3,000", ("10", "%") for "10%" or "10 percent", ("5", "minu") for "5 minutes"."""
    out = {}
    for m in _NUMBER.finditer(text):
        unit = (m.group(1) or "").lower()
        unit = _UNITS.get(unit, unit[:4])
        value = m.group(0)[: m.start(1) - m.start()] if m.group(1) else m.group(0)
        value = value.strip().replace(",", "").rstrip(".")
        out[(value[:-2] if value.endswith(".0") else value, unit)] = m.group(0).strip()
    return out


def unstated(claimed: dict[tuple[str, str], str], passages: str) -> list[str]:
    """The claimed numbers the passages do not state with the same unit word within three words after it: "24
    hours" is not "24/7", "3,000 requests" is "3,000 per minute for … requests"."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", passages.lower())
    out = []
    for (value, unit), written in claimed.items():
        number = rf"(?<![\d.]){re.escape(value)}(?:\.0+)?(?![\d]|\.\d)"
        if unit == "%":
            pattern = number + r"\s?(?:%|percent)"
        elif unit:
            pattern = number + rf"\W*(?:[\w$€£-]+\W+){{0,3}}?{re.escape(unit)}"
        else:
            pattern = number
        if not re.search(pattern, text):
            out.append(written)
    return out


class GroundingChecker:
    """Checks sentences against one turn's passages. The passages' statements are embedded once — each list item
    and table row also sentence by sentence, as an answer quotes them."""

    def __init__(self, citations: list[Citation], embed: Embed | None, *, question: str = "") -> None:
        self.citations = citations
        self.question = question  # a number the question states may be repeated
        self.embed = embed
        found = units(citations)
        self.units: list[Unit] = found + [replace(u, text=s) for u in found if u.kind != "sentence"
                                          for s in split_sentences(u.text)[1:]]
        self.vectors = embed([u.text for u in self.units]) if embed is not None and self.units else []
        self.text = [clean(c.quote) + " " + (c.section or "") + " " + c.title for c in citations]

    def check(self, sentence: str) -> SentenceCheck:
        cited = {int(n) - 1 for n in _CITED.findall(sentence)} & set(range(len(self.citations)))
        passages = set(cited) or set(range(len(self.citations)))
        plain = strip_markers(clean(sentence))
        if len(content_words(plain)) < MIN_WORDS or not self.citations:
            return SentenceCheck(sentence, supported=True, counted=False, similarity=0.0)
        similarity, nearest = self._nearest(plain, passages)
        # A number must be stated by one of the statements nearest in meaning (or by the question): "capped at
        # 23%" is not supported by a passage whose 23% is about something else.
        source = " ".join([self.question, *(text for _, text, _ in nearest)])
        invented = unstated(numbers(plain), source) + [c for c in dict.fromkeys(_CODE.findall(plain))
                                                       if c.lower() not in source.lower()]
        words = term_coverage(plain, " ".join(self.text[p] for p in passages))
        if invented:
            reason = f"states {', '.join(invented)}, which the cited passages do not"
            return SentenceCheck(sentence, supported=False, counted=True, similarity=similarity, reason=reason)
        supported = similarity >= SIMILAR or (similarity >= SIMILAR_WITH_WORDS and words >= WORDS)
        if not supported:
            reason = f"no cited passage says this (similarity {similarity:.2f}, words {words:.0%})"
            return SentenceCheck(sentence, supported=False, counted=True, similarity=similarity, reason=reason)
        if not self.vectors:  # whole passages (too coarse to compare polarity with): the one with most of its words
            candidates = [nearest[0][2]]
        else:
            # Backed by the nearest statement that says the same with the same polarity; a sentence whose
            # statements on the matter all say the opposite ("may be charged" / "must never be charged") is not.
            backing = [(agrees(plain, text), text, p) for score, text, p in nearest if score >= SIMILAR_WITH_WORDS]
            opposite = [text for verdict, text, _ in backing if verdict is False]
            if opposite and not any(verdict for verdict, _, _ in backing):
                reason = f"says the opposite of the cited passage: \u201c{opposite[0][:160]}\u201d"
                return SentenceCheck(sentence, supported=False, counted=True, similarity=similarity, reason=reason)
            candidates = [p for verdict, _, p in backing if verdict] + [p for _, _, p in nearest]
        # Its marker: a passage that supports it on its own (the sentence with that [n] checks as supported).
        passage = None if cited else next((p for p in dict.fromkeys(candidates)
                                           if self.check(f"{sentence} [{p + 1}]").supported), None)
        return SentenceCheck(sentence, supported=True, counted=True, similarity=similarity, passage=passage)

    def _nearest(self, sentence: str, passages: set[int]) -> tuple[float, list[tuple[float, str, int]]]:
        """The best similarity to a statement of `passages`, and the NEAREST statements, best first: (similarity,
        text, passage). Without an embedder: the share of the sentence's words in the passages, and the whole
        passages (all of them may state its numbers)."""
        if self.embed is None or not self.vectors:
            joined = term_coverage(sentence, " ".join(self.text[p] for p in sorted(passages)))
            return joined, sorted(((term_coverage(sentence, self.text[p]), self.text[p], p) for p in passages),
                                  key=lambda x: -x[0])
        vector = self.embed([sentence])[0]
        scored = sorted(((sum(a * b for a, b in zip(vector, self.vectors[i], strict=False)), u.text, u.passage)
                         for i, u in enumerate(self.units) if u.passage in passages), key=lambda x: -x[0])
        return (scored[0][0] if scored else 0.0), scored[:NEAREST]


def check_answer(answer: str, citations: list[Citation], embed: Embed | None, *, question: str = "") -> Check:
    checker = GroundingChecker(citations, embed, question=question)
    return Check([checker.check(s) for para in answer.split("\n") for s in split_claims(para)])


def split_claims(text: str) -> list[str]:
    return split_sentences(re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", text)) if text.strip() else []
