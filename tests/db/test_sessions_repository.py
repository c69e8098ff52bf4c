"""backend/db/repositories/sessions.py: browser sessions belong to a person, not to a tenant (one sign-in serves
every tenant the person is a member of), so the isolation here is between people: signing out or ending one
person's sessions never touches another person's sign-ins or cutoff."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from backend.db.models import BrowserSession, BrowserSessionCutoff
from backend.db.repositories import sessions as repo
from tests.db.tenancy import assert_all_covered

ALICE, BOB = "alice", "bob"  # alice owns the rows; calls are made for bob
NOW = time.time()

UNSCOPED = {
    "purge_sessions": "deletes sign-ins and cutoffs older than the sessions' maximum age, whoever they are of",
}


def _rows_of(db, subject: str) -> dict[str, list]:  # noqa: ANN001
    with db.engine.connect() as conn:
        return {table.__tablename__: sorted((dict(r) for r in conn.execute(
                    select(table.__table__).where(table.__table__.c.subject == subject)).mappings()), key=repr)
                for table in (BrowserSession, BrowserSessionCutoff)}


@pytest.fixture
def seeded(db):
    """Each person: two active sign-ins; alice's older cutoff."""
    with db.session() as s:
        for subject in (ALICE, BOB):
            for n in (1, 2):
                repo.add_session(session=s, row=BrowserSession(sid=f"{subject}-{n}", subject=subject,
                                                               provider="password", signed_in_at=NOW - 60 * n))
        s.add(BrowserSessionCutoff(subject=ALICE, ended_at=NOW - 3600, ended_by="root"))
        s.commit()
    return db


def test_every_function_is_subject_scoped_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_add_session(seeded):
    before = _rows_of(seeded, ALICE)
    with seeded.session() as s:
        repo.add_session(session=s, row=BrowserSession(sid=f"{BOB}-3", subject=BOB, signed_in_at=NOW))
    assert _rows_of(seeded, ALICE) == before


def test_session_state(seeded):
    with seeded.session() as s:
        repo.end_sessions(session=s, subject=BOB, at=NOW, by="root", active_since=NOW - 86400)
        assert repo.session_state(session=s, sid=f"{ALICE}-1", subject=ALICE) == (None, NOW - 3600)
        assert repo.session_state(session=s, sid=f"{BOB}-1", subject=BOB) == ("ended", NOW)


def test_revoke_session(seeded):
    """By sid: the sid and subject come from the caller's own signed token."""
    before = _rows_of(seeded, ALICE)
    with seeded.session() as s:
        assert repo.revoke_session(session=s, sid=f"{BOB}-1", subject=BOB, signed_in_at=NOW - 60, reason="logout",
                                   by=BOB, at=NOW)
        # a sid with no row (purged, or not written yet) gets a revoked row of its own
        assert repo.revoke_session(session=s, sid=f"{BOB}-9", subject=BOB, signed_in_at=NOW, reason="logout",
                                   by=BOB, at=NOW)
    assert _rows_of(seeded, ALICE) == before


def test_end_sessions(seeded):
    before = _rows_of(seeded, ALICE)
    with seeded.session() as s:
        assert repo.end_sessions(session=s, subject=BOB, at=NOW, by="root", active_since=NOW - 86400) == 2
    assert _rows_of(seeded, ALICE) == before
