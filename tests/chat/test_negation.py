"""The grounding check's polarity test (backend/chat/negation.py): a sentence that says the opposite of the
statement it is matched to disagrees with it; limits, double negations and clauses about something else do not."""

from __future__ import annotations

import pytest

from backend.chat.negation import agrees


@pytest.mark.parametrize(("sentence", "statement"), [
    ("A sales rep can approve discounts above 10% on their own.", "A sales rep cannot approve discounts above 10%."),
    ("Minibar charges are always reimbursed.", "Minibar charges are never reimbursed."),
    ("Managers may approve their own expenses.", "Managers must not approve their own expenses."),
    ("Professional services can be discounted.", "Professional services are never discounted."),
    ("Personal expenses may be charged to a corporate card.",
     "Personal expenses must never be charged to a corporate card; if it happens by accident, repay the amount."),
    ("Minibar charges are reimbursed.", "The following are never reimbursed: fines, minibar charges, gym fees."),
    ("Gifts to government officials are allowed.", "Gifts to government officials are prohibited."),
    ("Upgrades paid with company money are reimbursable.",
     "Upgrades paid with personal miles are fine; upgrades paid with company money are not."),
])
def test_a_sentence_that_negates_its_statement_disagrees(sentence, statement):
    assert agrees(sentence, statement) is False
    assert agrees(statement, sentence) is False  # and the other way round


@pytest.mark.parametrize(("sentence", "statement"), [
    ("A sales rep can approve discounts up to 10%.", "A sales rep cannot approve discounts above 10%."),
    ("Tips are reimbursable up to 20% of the bill.", "Tips may not exceed 20% of the bill."),
    ("Expenses must be submitted no later than 30 days after they were incurred.",
     "Expenses must be submitted within 30 days of being incurred."),
    ("Gifts to partners are allowed.", "Gifts to partners are not prohibited."),
    ("Business class is allowed for flights over 10 hours.",
     "Business class is allowed only for flights over 10 hours, and never for travel on the same day as a return "
     "flight."),
    ("Minibar charges are never reimbursed.", "The following are never reimbursed: fines, minibar charges."),
    ("No justification is required up to 10%.", "Up to 10%: no justification required."),
])
def test_the_same_polarity_limits_and_other_clauses_agree(sentence, statement):
    assert agrees(sentence, statement) is True


def test_a_statement_about_something_else_neither_agrees_nor_disagrees():
    assert agrees("Hotels are capped at $250 per night.", "Alcohol is never reimbursed outside client meals.") is None
