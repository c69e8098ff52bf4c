"""backend/db/repositories/usage.py: tenant B's usage sums and reports never include tenant A's turns (same user,
same assistant, same model, same day), and writing B's turns leaves A's untouched."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.db.models import utcnow
from backend.db.repositories import usage as repo
from tests.db.tenancy import A, B, assert_all_covered, rows_of

UNSCOPED = {
    "new_turn": "builds a record in memory (no database): its tenant is whatever the caller sets",
}

SINCE = utcnow() - timedelta(days=1)
UNTIL = utcnow() + timedelta(days=1)


def _turn(tenant: str, tokens: int, cost: float, **kw: object):  # noqa: ANN202
    return repo.new_turn(tenant=tenant, subject="carol", assistant="helper", model="anthropic/claude-haiku-5-5",
                         tier="fast", prompt_tokens=tokens, completion_tokens=tokens, cost_usd=cost, **kw)


@pytest.fixture
def seeded(db):
    """A: big turns (an answer, a cached one, an internal rewrite); B: one small answer."""
    with db.session() as s:
        repo.insert_turns(session=s, turns=[_turn(A, 1000, 1.0), _turn(A, 500, 0.5, cached=True),
                                            _turn(A, 100, 0.1, channel="internal"), _turn(B, 10, 0.01)])
    return db


def test_every_function_is_tested_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_insert_turns(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        ids = repo.insert_turns(session=s, turns=[_turn(B, 20, 0.02), _turn(B, 30, 0.03)])
    assert len(ids) == 2
    assert rows_of(seeded, A) == before


def test_sum_usage(seeded):
    with seeded.session() as s:
        assert repo.sum_usage(session=s, tenant=B, since=SINCE) == (20, pytest.approx(0.01))
        assert repo.sum_usage(session=s, tenant=B, since=SINCE, until=UNTIL) == (20, pytest.approx(0.01))


@pytest.mark.parametrize("group_by", ["day", "model", "user", "assistant"])
def test_usage_totals(seeded, group_by):
    with seeded.session() as s:
        rows = repo.usage_totals(session=s, tenant=B, since=SINCE, until=UNTIL, group_by=group_by)
    assert len(rows) == 1
    row = rows[0]
    assert (row["requests"], row["internal_calls"], row["cached"], row["total_tokens"]) == (1, 0, 0, 20)
    assert row["cost_usd"] == pytest.approx(0.01)


def test_usage_per_day_and_model(seeded):
    with seeded.session() as s:
        rows = repo.usage_per_day_and_model(session=s, tenant=B, since=SINCE, until=UNTIL)
    assert [(r["model"], r["requests"], r["total_tokens"]) for r in rows] == [("anthropic/claude-haiku-5-5", 1, 20)]
    assert rows[0]["day"] == utcnow().date().isoformat() and rows[0]["cost_usd"] == pytest.approx(0.01)


def test_downgrade_totals(db):
    with db.session() as s:
        repo.insert_turns(session=s, turns=[_turn(A, 10, 0.0, downgraded_from="smart", downgrade_reason="x"),
                                            _turn(A, 10, 0.0, downgraded_from="smart", downgrade_reason="x"),
                                            _turn(B, 10, 0.0, downgraded_from="smart",
                                                  downgrade_reason="member_tokens_per_day"),
                                            _turn(B, 10, 0.0)])
        rows = repo.downgrade_totals(session=s, tenant=B, since=SINCE, until=UNTIL)
    assert rows == [{"from_tier": "smart", "to_tier": "fast", "reason": "member_tokens_per_day", "answers": 1}]
