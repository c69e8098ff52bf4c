"""The offline checks of one answer against one case: no model is asked, so a run costs only its answers.

- `cited`: every expected document is among the answer's citations (title or file name, case and punctuation
  ignored).
- `facts`: every expected fact is stated — its words are in the answer (all of its content words, every number
  with its unit), or one sentence of the answer means the same (the knowledge base's embedder, similarity at
  least FACT_SIMILAR) without saying the opposite (negation.py) and with the fact's numbers.
- `refused`: a case marked must_refuse passes only when the answer says it does not know (the pipeline's own
  "I don't know", or the model's words for it); a case that expects facts or citations fails when it refuses.
- `must_not`: none of the phrases is in the answer (case-insensitive, whole words).
- `grounded`: the share of the answer's sentences its cited passages support (chat/grounding_check.py; the
  pipeline's own score when it checked the answer) is at least GROUNDED_MIN.

Each check is {ok: true|false|null, detail}: null when the case does not ask for it. A case passes when no
applicable check failed and at least one applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from backend.chat.grounded import Embed
from backend.chat.grounding_check import check_answer, numbers, split_claims
from backend.chat.negation import agrees
from backend.chat.passage_units import clean, strip_markers
from backend.knowledge.retrieval import Citation
from backend.knowledge.text import content_words

FACT_SIMILAR = 0.75  # a sentence this similar to the fact (all-MiniLM-L6-v2, normalised vectors) states it
GROUNDED_MIN = 0.75  # the share of supported sentences an answer needs to count as grounded
CHECKS = ("cited", "facts", "refused", "must_not", "grounded")

# How the chat and models say they do not know: the pipeline's NO_ANSWER starts with "I don't know"; models say it
# in many ways. Written as patterns on the lower-cased answer.
_REFUSAL = re.compile(
    r"\bi (?:do not|don't|dont) know\b|\bi (?:do not|don't) have (?:any |enough )?information\b"
    r"|\b(?:i )?(?:could not|couldn't|cannot|can't|was unable to|am unable to) (?:find|answer|locate)\b"
    r"|\bno (?:relevant )?(?:information|passages?|documents?) (?:about|on|for|in|were found|was found)\b"
    r"|\b(?:not|isn't|is not) (?:covered|mentioned|addressed|described) (?:in|by) (?:the|our|any)\b"
    r"|\bnothing in the .{0,40}knowledge base\b|\boutside (?:of )?(?:my|the) (?:scope|knowledge)\b")


@dataclass
class Answered:
    """What the pipeline returned for one case: the answer, its citations (with each document's file name when
    known), and the pipeline's own grounding record and route reason."""

    answer: str
    citations: list[Citation]
    filenames: dict[str, str] = field(default_factory=dict)  # document id -> file name
    grounding: dict[str, Any] | None = None
    route_reason: str | None = None


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w%$.]+", " ", text.lower())).strip(" .")


def _doc_key(name: str) -> str:
    stem = re.sub(r"\.(md|markdown|txt|pdf|docx|html?)$", "", name.strip().lower())
    return re.sub(r"[^a-z0-9]+", " ", stem).strip()


def refused(a: Answered) -> bool:
    """Whether the answer says it does not know: the pipeline refused (no passage found), or the text says so."""
    if (a.route_reason or "").startswith("no relevant passages"):
        return True
    text = strip_markers(clean(a.answer)).lower().replace("\u2019", "'")
    return bool(_REFUSAL.search(text))


def check_cited(case: dict[str, Any], a: Answered) -> dict[str, Any]:
    wanted = case.get("cite") or []
    if not wanted:
        return {"ok": None, "detail": "no document expected"}
    names = set()
    for c in a.citations:
        names.add(_doc_key(c.title))
        if c.document_id in a.filenames:
            names.add(_doc_key(a.filenames[c.document_id]))
    missing = [w for w in wanted if _doc_key(w) not in names]
    cited = sorted({c.title for c in a.citations})
    if missing:
        return {"ok": False, "detail": f"did not cite {', '.join(missing)} (cited: {', '.join(cited) or 'nothing'})",
                "missing": missing}
    return {"ok": True, "detail": f"cited {', '.join(wanted)}"}


def _numbers_in(fact: str, text: str) -> bool:
    """Every number of the fact is stated in `text` with the same unit (3,000 = 3000; 10% = 10 percent)."""
    theirs = numbers(text)
    return all(key in theirs or (key[0], "") in theirs and not key[1] for key in numbers(fact))


def fact_stated(fact: str, answer: str, sentences: list[str], embed: Embed | None,
                vectors: list[list[float]] | None) -> dict[str, Any]:
    """Whether the answer states `fact`: {ok, how, sentence?, similarity?}."""
    plain = _norm(strip_markers(clean(answer)))
    if _norm(fact) and _norm(fact) in plain:
        return {"fact": fact, "ok": True, "how": "words"}
    words = content_words(fact)
    have = {w[:5] for w in content_words(plain)}
    if words and all(w[:5] in have for w in words) and _numbers_in(fact, plain):
        return {"fact": fact, "ok": True, "how": "words"}
    if embed is None or not sentences or not vectors:
        return {"fact": fact, "ok": False, "how": "not found (no embedder: words only)"}
    target = embed([fact])[0]
    scored = sorted(((sum(x * y for x, y in zip(target, v, strict=False)), s) for v, s in zip(vectors, sentences,
                                                                                              strict=False)),
                    key=lambda p: -p[0])
    for similarity, sentence in scored[:3]:
        if similarity < FACT_SIMILAR:
            break
        if not _numbers_in(fact, sentence):
            continue
        if agrees(sentence, fact) is False:
            return {"fact": fact, "ok": False, "how": f"says the opposite (similarity {similarity:.2f})",
                    "sentence": sentence}
        return {"fact": fact, "ok": True, "how": f"meaning (similarity {similarity:.2f})", "sentence": sentence}
    best = scored[0][0] if scored else 0.0
    return {"fact": fact, "ok": False, "how": f"not stated (closest sentence: similarity {best:.2f})"}


def check_facts(case: dict[str, Any], a: Answered, embed: Embed | None) -> dict[str, Any]:
    facts = case.get("facts") or []
    if not facts:
        return {"ok": None, "detail": "no fact expected"}
    sentences = [strip_markers(clean(s)) for para in a.answer.split("\n") for s in split_claims(para)]
    sentences = [s for s in sentences if s]
    vectors = embed(sentences) if embed is not None and sentences else None
    items = [fact_stated(f, a.answer, sentences, embed, vectors) for f in facts]
    missing = [i["fact"] for i in items if not i["ok"]]
    detail = (f"stated {len(facts) - len(missing)} of {len(facts)}" +
              (f"; missing: {'; '.join(missing)}" if missing else ""))
    return {"ok": not missing, "detail": detail, "items": items}


def check_refused(case: dict[str, Any], a: Answered) -> dict[str, Any]:
    did = refused(a)
    if case.get("must_refuse"):
        return {"ok": did, "detail": "said it does not know" if did else "answered a question it should refuse"}
    if case.get("facts") or case.get("cite"):
        return {"ok": not did, "detail": "said it does not know, but the case expects an answer" if did
                else "answered"}
    return {"ok": None, "detail": "not asked"}


def check_must_not(case: dict[str, Any], a: Answered) -> dict[str, Any]:
    phrases = case.get("must_not") or []
    if not phrases:
        return {"ok": None, "detail": "no forbidden phrase"}
    text = strip_markers(clean(a.answer)).lower()
    found = [p for p in phrases
             if re.search(r"(?<![\w])" + re.escape(p.lower()) + r"(?![\w])", text)]
    if found:
        return {"ok": False, "detail": f"contains {', '.join(repr(p) for p in found)}", "found": found}
    return {"ok": True, "detail": "none of the forbidden phrases"}


def check_grounded(case: dict[str, Any], a: Answered, embed: Embed | None) -> dict[str, Any]:
    if refused(a):
        return {"ok": None, "detail": "no answer to ground (it said it does not know)"}
    if not a.citations:
        if case.get("facts") or case.get("cite"):
            return {"ok": False, "detail": "the answer cites no passage"}
        return {"ok": None, "detail": "no passage cited"}
    score = (a.grounding or {}).get("score")
    unsupported: list[str] = []
    if score is None:
        result = check_answer(a.answer, a.citations, embed)
        score = result.score
        unsupported = [f"{s.text} ({s.reason})" for s in result.unsupported][:5]
    ok = score >= GROUNDED_MIN
    detail = f"{score:.0%} of its sentences supported by the cited passages"
    if not ok and unsupported:
        detail += "; not supported: " + " | ".join(u[:160] for u in unsupported)
    return {"ok": ok, "detail": detail, "score": round(float(score), 3)}


def run_checks(case: dict[str, Any], a: Answered, embed: Embed | None) -> tuple[dict[str, dict[str, Any]], bool]:
    """Every check's verdict, and whether the case passed."""
    checks = {"cited": check_cited(case, a), "facts": check_facts(case, a, embed), "refused": check_refused(case, a),
              "must_not": check_must_not(case, a), "grounded": check_grounded(case, a, embed)}
    return checks, verdict(checks)


def verdict(checks: dict[str, dict[str, Any]]) -> bool:
    applied = [c["ok"] for c in checks.values() if c.get("ok") is not None]
    return bool(applied) and all(applied)
