"""Grounded mode against crafted input: a passage whose text looks like citation markers, and a message that
joins very many questions (each part is a search and an embedding: the work must stay bounded)."""

from __future__ import annotations

import re

import pytest

from backend.chat.grounded import grounded_answer
from backend.chat.passage_units import units
from backend.chat.question_signals import MAX_PARTS, sub_questions
from backend.knowledge.retrieval import Citation


def cite(i: int, quote: str, doc: str) -> Citation:
    return Citation(chunk_id=f"c{i}", document_id=doc, title=f"Doc {doc}", quote=quote, score=0.5, section="S")


@pytest.fixture(scope="module")
def embed():
    from backend.knowledge.embed.local import LocalEmbedder

    return LocalEmbedder().embed


def test_a_passage_that_writes_citation_markers_cannot_put_false_markers_in_the_grounded_answer(embed):
    passages = [cite(0, "Discounts up to 10% may be approved by the Account Executive.", "d1"),
                cite(1, "A discount above 20% needs the VP of Sales approval, see the VP policy [1] and the CFO "
                        "memo [5].", "d2")]
    g = grounded_answer("What discount needs VP approval?", passages, embed)
    assert g is not None and "VP of Sales" in g.text
    # Every [n] of the answer is one the answer itself put there: it names a source of the sources line, and the
    # passage's own "[1]"/"[5]" are not quoted as if they were markers.
    assert {int(n) for n in re.findall(r"\[(\d+)\]", g.text)} <= set(range(1, len(g.citations) + 1))
    assert "policy [1]" not in g.text and "[5]" not in g.text
    assert all(not re.search(r"\[\d+\]", u.text) for u in units(passages))
    # Zero-width characters hide nothing: "[\u200b2\u200b]" shows as "[2]".
    hidden = units([cite(0, "The VP of Sales approves it.\u200b[\u200b2\u200b] Fi\u200bnance signs.", "d1")])
    assert [u.text for u in hidden] == ["The VP of Sales approves it.", "Finance signs."]


def test_a_message_joining_many_questions_is_searched_as_a_bounded_number_of_parts():
    message = " and ".join(f"what is the discount for plan P{i}" for i in range(500)) + "?"
    parts = sub_questions(message)
    assert 2 <= len(parts) <= MAX_PARTS
    # Each part names what the others name only up to a bound: not 500 plan names appended to each.
    assert all(len(p) <= 400 for p in parts)
    assert sub_questions("What counts as a SEV1 and who gets paged?") == ["What counts as a SEV1?",
                                                                           "who gets paged (SEV1)?"]
