"""The grounded answer's parts on the demo corpus's own text, with the bundled embedder: passages cut into
statements, the question's amounts against a rule's thresholds, joined questions, the statements chosen (every
one a passage's, every marker a cited passage's) and the grounding check (an invented number is unsupported)."""

from __future__ import annotations

import re

import pytest

from backend.chat.grounded import grounded_answer
from backend.chat.grounding_check import check_answer, numbers
from backend.chat.passage_units import clean, units
from backend.chat.question_signals import sub_questions, threshold_fit
from backend.knowledge.retrieval import Citation
from backend.seed import DEMO_CORPUS

THRESHOLDS = """Discounts are always calculated on the total first-year subscription list price, excluding add-ons and \
professional services. Approval is required before a quote is sent to the customer.

- **Up to 10%**: the Account Executive may approve on their own. No justification required.
- **More than 10% and up to 20%**: requires approval by the Sales Manager.
- **More than 20%**: requires approval from both the VP of Sales and Finance (the Revenue Controller)."""

MULTI_YEAR = """We encourage multi-year agreements. Standard multi-year terms are:

- **Two-year commitment**: an additional 5% discount on top of any approved discount.
- **Three-year commitment**: an additional 8% discount, with a price lock for all three years.

The multi-year discount does not count toward the approval thresholds above. For example, a 15% negotiated \
discount on a three-year deal needs Sales Manager approval even though the effective discount is 23%."""

PLANS = """Northwind Cloud is sold in three plans.

| Plan | List price | Included |
|------|-----------|----------|
| Starter | $49 per user per month | up to 25 users |
| Growth | $89 per user per month | up to 250 users |

```json
{"plan": "growth", "price": 1234}
```"""


def cite(i: int, quote: str, section: str = "Pricing") -> Citation:
    return Citation(chunk_id=f"c{i}", document_id="d1", title="Northwind Cloud Pricing Rules", quote=quote,
                    score=0.5, section=section)


@pytest.fixture(scope="module")
def embed():
    from backend.knowledge.embed.local import LocalEmbedder

    return LocalEmbedder().embed


def test_passages_are_cut_into_sentences_items_and_table_rows_read_with_their_header():
    found = units([cite(0, THRESHOLDS), cite(1, PLANS)])
    texts = [u.text for u in found]
    assert "Up to 10%: the Account Executive may approve on their own. No justification required." in texts
    assert [u.kind for u in found if u.passage == 0] == ["sentence", "sentence", "item", "item", "item"]
    assert all(u.lead for u in found if u.passage == 0 and u.kind == "sentence")  # they introduce the list
    assert "Growth — List price: $89 per user per month; Included: up to 250 users" in texts
    assert not any("1234" in t for t in texts)  # code is not a statement


def test_a_threshold_holds_the_questions_amount_or_excludes_it():
    q = "Who must approve a 25% discount on a 3-year Enterprise deal?"
    assert threshold_fit(q, "More than 20%: requires approval from both the VP of Sales and Finance") == 1.0
    assert threshold_fit(q, "More than 10% and up to 20%: requires approval by the Sales Manager") == -1.0
    assert threshold_fit(q, "Up to 10%: the Account Executive may approve on their own") == -1.0
    assert threshold_fit(q, "Discounts on add-ons are capped at 10%") == 0.0  # no threshold stated
    po = "Who approves a purchase order of $50,000?"
    assert threshold_fit(po, "$25,000.01 to $100,000: budget owner and the department's VP") == 1.0
    assert threshold_fit(po, "$2,500 to $25,000: budget owner (cost-center manager)") == -1.0
    above = "Who approves an expense report above $5,000?"
    assert threshold_fit(above, "Above $5,000: direct manager, department head, then the CFO") == 1.0
    assert threshold_fit(above, "$500.01 to $5,000: direct manager, then the department head") == -1.0


def test_joined_questions_are_asked_one_by_one_with_the_names_the_other_gives():
    assert sub_questions("What counts as a SEV1 and who gets paged?") == ["What counts as a SEV1?",
                                                                        "who gets paged (SEV1)?"]
    assert sub_questions("How do canary deploys and rollbacks work?") == ["How do canary deploys and rollbacks work?"]


def test_the_grounded_answer_quotes_the_rule_the_question_asks_about_with_markers_of_cited_passages(embed):
    passages = [cite(0, MULTI_YEAR, "Multi-Year Terms"), cite(1, THRESHOLDS, "Discount Approval Thresholds"),
                cite(2, PLANS, "Plans and List Prices")]
    g = grounded_answer("Who must approve a 25% discount on a 3-year Enterprise deal?", passages, embed)
    assert g is not None
    assert "VP of Sales and Finance" in g.text
    # only the passages used are cited, numbered as they first appear, and every marker is one of them
    markers = [int(n) for n in re.findall(r"\[(\d+)\]", g.text)]
    assert sorted(set(markers)) == list(range(1, len(g.citations) + 1))
    assert passages[2] not in g.citations
    # every statement is a cited passage's own words
    for line in re.split(r"\n+", g.text):
        statement = re.sub(r"^- |\s*\[\d+\]$", "", line).strip()
        n = int(re.findall(r"\[(\d+)\]$", line)[0])
        source = clean(re.sub(r"^\s*- ", "", g.citations[n - 1].quote, flags=re.M)).replace("\n", " ")
        assert statement.rstrip(".") in source, (statement, n)
    assert "".join(g.pieces) == g.text


def test_a_list_the_question_asks_for_is_shown_whole_across_two_passages_of_one_section(embed):
    text = (DEMO_CORPUS / "sales" / "sales-playbook.md").read_text()
    section = text[text.index("Every opportunity moves"):text.index("Opportunities that sit")]
    first, second = section[:section.index("6. ")], section[section.index("5. "):]  # overlapping chunks
    passages = [cite(0, second, "Pipeline Stages"), cite(1, first, "Pipeline Stages")]
    g = grounded_answer("What are the stages of our sales playbook?", passages, embed)
    assert g is not None
    for stage in ("Prospect", "Discovery", "Qualified", "Technical Validation", "Business Case", "Negotiation",
                  "Closed Won"):
        assert stage in g.text
    assert g.text.count("Business Case") == 1  # the overlap is quoted once


def test_numbers_are_read_with_their_unit():
    assert numbers("acknowledge within 24 hours, 3,000 per minute, 10 percent, 24/7") == {
        ("24", "hour"): "24 hours", ("3000", ""): "3,000 per", ("10", "%"): "10 percent", ("24", ""): "24",
        ("7", ""): "7"}


def test_the_check_finds_an_invented_number_and_a_claim_no_passage_makes(embed):
    runbook = (DEMO_CORPUS / "engineering" / "incident-runbook.md").read_text()
    severity = runbook[runbook.index("Severity is assigned"):runbook.index("- **SEV3")]
    passages = [Citation(chunk_id="c0", document_id="d", title="Incident Response Runbook", quote=severity,
                         score=0.5, section="Severity Levels")]
    check = check_answer("A SEV1 page must be acknowledged within 5 minutes [1].\n"
                         "A SEV1 page must be acknowledged within 24 hours.\n"
                         "SEV1 incidents earn the on-call engineer a 37% bonus.\n"
                         "I hope this helps!", passages, embed,
                         question="How quickly must a SEV1 page be acknowledged?")
    verdicts = [(s.supported, s.counted) for s in check.sentences]
    assert verdicts == [(True, True), (False, True), (False, True), (True, False)]
    assert "24 hours" in check.sentences[1].reason and "37%" in check.sentences[2].reason
    assert check.score == pytest.approx(1 / 3, abs=0.001)
