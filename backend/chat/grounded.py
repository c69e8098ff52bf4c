"""The grounded answer: the statements of the retrieved passages that answer the question, quoted with their
citation markers — so every statement shown comes from a cited source.

Each passage is cut into sentences, list items and table rows (passage_units.py); each unit is scored by its
embedding similarity to the question (the knowledge base's own embedder: no other model is loaded) plus the
share of the question's words it contains (the keyword signal retrieval also uses). The best units are kept; a
list or table the question asks for is kept whole (the lead sentence that introduces it, or two of its items,
chosen), including its continuation in the next passage of the same section. The units are shown grouped by
passage (best passage first) in the passage's own order, each run of one passage followed by `[n]`, n being
the passage's number on the sources line — only the passages used are cited, numbered as they first appear.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from backend.chat.passage_units import Unit, units
from backend.chat.question_signals import sub_questions, threshold_fit
from backend.knowledge.retrieval import Citation
from backend.knowledge.text import content_words

Embed = Callable[[list[str]], list[list[float]]]

MAX_SEEDS = 3  # statements chosen on their own score (a list they lead brings its items)
MAX_UNITS = 12
MAX_CHARS = 1400
RELATIVE = 0.8  # a seed scores at least this share of the best statement's score
KEYWORD_WEIGHT = 0.35
THRESHOLD_WEIGHT = 0.25
SHORT_ITEMS = 220  # a list of items this short (on average) is shown whole when one of its items is chosen
_SUFFIX = re.compile(r"(?:ing|ed|es|s)$")
_EXAMPLE = re.compile(r"^(for example|example|e\.g\.)\b", re.I)


@dataclass
class Grounded:
    text: str  # the answer, with its [n] markers
    pieces: list[str]  # the same text in the pieces it is streamed in
    citations: list[Citation]  # the passages used, in marker order
    units: int


def _stem(word: str) -> str:
    """A crude stem: "paged", "pages" and "paging" are one word; then retrieval's 5-letter prefix."""
    return (_SUFFIX.sub("", word) if len(word) > 4 else word)[:5]


def coverage(question: str, text: str) -> float:
    """The share of the question's content words the text contains (stemmed)."""
    wanted = {_stem(w) for w in content_words(question)}
    return len(wanted & {_stem(w) for w in content_words(text)}) / len(wanted) if wanted else 0.0


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))  # the embedders return normalised vectors


def score_units(question: str, found: list[Unit], citations: list[Citation], embed: Embed | None,
                vectors: list[list[float]] | None = None) -> list[float]:
    """Similarity to the question (0..1) blended with the question's words it contains; a statement whose
    thresholds hold the question's amount ranks up, one whose thresholds exclude it down (question_signals.py);
    an example ("For example, …") ranks a little below the rule it illustrates."""
    if not found:
        return []
    if vectors is None and embed is not None:
        vectors = embed([question, *[u.text for u in found]])
    scores = []
    for i, u in enumerate(found):
        cos = _cosine(vectors[0], vectors[i + 1]) if vectors is not None else 0.0
        section = citations[u.passage].section or ""
        words = coverage(question, u.text) + 0.25 * coverage(question, section)
        weight = KEYWORD_WEIGHT if vectors is not None else 1.0
        score = (1 - weight) * cos + weight * min(1.0, words) + 0.05 * citations[u.passage].score
        score += THRESHOLD_WEIGHT * threshold_fit(question, u.text)
        if _EXAMPLE.match(u.text):
            score -= 0.2
        scores.append(score)
    return scores


def select(question: str, citations: list[Citation], embed: Embed | None) -> list[Unit]:
    """The statements of the answer, in the order they are shown: the best few for each question the message
    asks, with the lists they call for."""
    found = units(citations)
    if not found:
        return []
    asks = sub_questions(question)
    vectors = embed([*asks, *[u.text for u in found]]) if embed is not None else None
    chosen: set[int] = set()
    best_of: dict[int, float] = {}
    for n, ask in enumerate(asks):
        own = [vectors[n], *vectors[len(asks):]] if vectors is not None else None
        scores = score_units(ask, found, citations, embed, vectors=own)
        ranked = sorted(range(len(found)), key=lambda i: -scores[i])
        seeds = _seeds(found, scores, ranked)
        chosen.update(seeds)
        for block in _lists_asked_for(found, seeds, citations):
            chosen.update(block)
        for i in ranked[::-1]:
            best_of[found[i].passage] = max(best_of.get(found[i].passage, -9.0), scores[i])
    picked = _dedupe([found[i] for i in chosen])
    return _order(picked, best_of, citations)[:MAX_UNITS]


def _seeds(found: list[Unit], scores: list[float], ranked: list[int]) -> list[int]:
    best = scores[ranked[0]]
    seeds: list[int] = []
    seen: set[str] = set()
    for i in ranked:
        if len(seeds) >= MAX_SEEDS or (seeds and scores[i] < best * RELATIVE):
            break
        if found[i].key not in seen:
            seeds.append(i)
            seen.add(found[i].key)
    return seeds


def _lists_asked_for(found: list[Unit], seeds: list[int], citations: list[Citation]) -> list[list[int]]:
    """The lists or tables to show whole: the one a chosen lead sentence introduces, or one two chosen items are
    in; with the items that continue it at the start of another passage (a chunk boundary cut the list)."""
    out = []
    by_block: dict[tuple[int, int], list[int]] = {}
    for i, u in enumerate(found):
        by_block.setdefault((u.passage, u.block), []).append(i)
    for key, members in by_block.items():
        if found[members[0]].kind == "sentence":
            continue
        lead = [i for i in by_block.get((key[0], key[1] - 1), []) if found[i].lead]
        picked_items = [i for i in members if i in seeds]
        short = sum(len(found[i].text) for i in members) / len(members) <= SHORT_ITEMS
        if any(i in seeds for i in lead) or len(picked_items) >= 2 or (picked_items and short):
            rest = [i for (p, b), more in by_block.items() if p != key[0] and b == 0
                    and _same_section(citations[p], citations[key[0]])
                    and found[more[0]].kind == found[members[0]].kind for i in more]
            out.append(lead + members + rest)
    return out


def _dedupe(picked: list[Unit]) -> list[Unit]:
    seen: set[str] = set()
    out = []
    for u in sorted(picked, key=lambda u: (u.passage, u.pos)):
        if u.key not in seen:
            seen.add(u.key)
            out.append(u)
    return out


def _order(picked: list[Unit], passage_score: dict[int, float], citations: list[Citation]) -> list[Unit]:
    """Passages by their best statement's score, but a passage of the same document and section as one shown
    before it follows that one (the rest of a list a chunk boundary cut)."""
    passages = sorted({u.passage for u in picked}, key=lambda p: -passage_score.get(p, 0.0))
    first = {u.passage: u for u in sorted(picked, key=lambda u: -u.pos)}  # each passage's first statement shown
    # A passage that starts inside a list (a chunk boundary cut it) follows the one where the list starts.
    cont = {p: first[p].kind != "sentence" and first[p].block == 0 for p in passages}
    ordered: list[int] = []
    for p in passages:
        if p in ordered:
            continue
        group = [p, *(q for q in passages if q not in ordered and q != p
                      and _same_section(citations[p], citations[q]))]
        ordered.extend(sorted(group, key=lambda q: (cont[q], group.index(q))))
    rank = {p: i for i, p in enumerate(ordered)}
    return sorted(picked, key=lambda u: (rank[u.passage], u.pos))


def _same_section(a: Citation, b: Citation) -> bool:
    return a.document_id == b.document_id and (a.section or "") == (b.section or "")


def render(picked: list[Unit], citations: list[Citation], *, renumber: bool = True) -> Grounded:
    """Runs of one passage's sentences as a paragraph ending in its marker; list items and table rows as bullets,
    each with its marker. `renumber=False`: the markers keep the passages' numbers (an answer that already cites
    them by those numbers comes first)."""
    number: dict[int, int] = {}
    used: list[Citation] = []
    pieces: list[str] = []
    chars = 0
    run: list[str] = []
    run_passage: int | None = None

    def marker(p: int) -> str:
        if not renumber:
            return f"[{p + 1}]"
        if p not in number:
            number[p] = len(used) + 1
            used.append(citations[p])
        return f"[{number[p]}]"

    def flush() -> None:
        nonlocal run
        if run and run_passage is not None:
            pieces.append(("\n\n" if pieces else "") + " ".join(run) + f" {marker(run_passage)}")
        run = []

    for u in picked:
        if chars > MAX_CHARS:
            break
        chars += len(u.text)
        if u.kind == "sentence":
            if run_passage != u.passage:
                flush()
            run_passage = u.passage
            run.append(u.text)
        else:
            flush()
            run_passage = None
            sep = "\n" if pieces and pieces[-1].lstrip("\n").startswith("- ") else "\n\n" if pieces else ""
            pieces.append(f"{sep}- {u.text.rstrip('.')} {marker(u.passage)}")
    flush()
    return Grounded(text="".join(pieces), pieces=pieces, citations=used if renumber else citations,
                    units=len(picked))


def grounded_answer(question: str, citations: list[Citation], embed: Embed | None, *,
                    renumber: bool = True) -> Grounded | None:
    """None when the passages hold no quotable statement (only code or headings)."""
    picked = select(question, citations, embed)
    return render(picked, citations, renumber=renumber) if picked else None
