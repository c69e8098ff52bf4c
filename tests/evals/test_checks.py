"""The offline checks on their own, with the bundled embedder: what each one accepts and what it refuses (a fact in
other words, a different number, the opposite statement, a phrase inside a longer word, the ways a model says it
does not know)."""

from __future__ import annotations

import pytest

from backend.evals.checks import Answered, check_cited, check_facts, check_must_not, check_refused, refused
from backend.knowledge.embed.local import LocalEmbedder
from backend.knowledge.retrieval import Citation

PASSAGE = Citation(chunk_id="c1", document_id="d1", title="Northwind Cloud Pricing Rules", score=0.9,
                   quote="Up to 10%: the Account Executive may approve on their own.")


@pytest.fixture(scope="module")
def embed():
    return LocalEmbedder().embed


def facts(answer: str, *expected: str, embed=None) -> dict:
    return check_facts({"facts": list(expected)}, Answered(answer=answer, citations=[PASSAGE]), embed)


def test_a_fact_is_stated_by_its_words_or_its_meaning_but_not_with_another_number_or_the_opposite(embed):
    assert facts("Reps can approve discounts up to 10% on their own [1].", "up to 10%")["ok"] is True
    assert facts("The Sales Manager must approve it.", "sales manager")["ok"] is True  # case and markup ignored
    by_meaning = facts("Trials that customers start themselves run for two weeks.", "Self-serve trials last 14 days",
                       embed=embed)
    assert by_meaning["ok"] is False  # "two weeks" is not the number 14: a number must be stated as such
    paraphrase = facts("The subscription is billed yearly, in advance.", "billed annually in advance", embed=embed)
    assert paraphrase["ok"] is True and paraphrase["items"][0]["how"].startswith("meaning"), paraphrase
    assert facts("Reps can approve discounts up to 15% on their own.", "up to 10%", embed=embed)["ok"] is False
    opposite = facts("Professional services are discounted.", "Professional services are never discounted",
                     embed=embed)
    assert opposite["ok"] is False, opposite
    assert facts("anything", embed=embed)["ok"] is None  # not asked


def test_cited_matches_a_title_or_a_file_name_and_names_what_is_missing():
    a = Answered(answer="x", citations=[PASSAGE], filenames={"d1": "pricing-rules.md"})
    assert check_cited({"cite": ["pricing-rules.md", "Northwind Cloud Pricing Rules", "PRICING RULES"]},
                       a)["ok"] is True  # case, punctuation and the extension ignored
    assert check_cited({"cite": ["pricing-rules.md", "Pricing Playbook"]}, a)["ok"] is False
    missing = check_cited({"cite": ["sales-playbook.md"]}, a)
    assert missing["ok"] is False and missing["missing"] == ["sales-playbook.md"]


def test_must_not_matches_whole_words_only():
    a = Answered(answer="The cap is 120% of list [1].", citations=[PASSAGE])
    assert check_must_not({"must_not": ["20%"]}, a)["ok"] is True
    assert check_must_not({"must_not": ["120%", "list"]}, a) == {"ok": False, "detail": "contains '120%', 'list'",
                                                                   "found": ["120%", "list"]}


@pytest.mark.parametrize("answer", [
    "I don't know — nothing in the Sales knowledge base covers this.",
    "I do not have information about parental leave.",
    "I couldn't find anything about that in the documents.",
    "That is not covered in the documents I can see.",
])
def test_the_ways_of_saying_i_do_not_know_are_refusals(answer):
    a = Answered(answer=answer, citations=[])
    assert refused(a) is True
    assert check_refused({"must_refuse": True}, a)["ok"] is True
    assert check_refused({"facts": ["x"]}, a)["ok"] is False  # an answer was expected


def test_an_answer_is_not_a_refusal():
    a = Answered(answer="Up to 10%, on their own [1]. I know this from the pricing rules.", citations=[PASSAGE])
    assert refused(a) is False and check_refused({"must_refuse": True}, a)["ok"] is False
    assert refused(Answered(answer="", citations=[], route_reason="no relevant passages in the knowledge base"))
