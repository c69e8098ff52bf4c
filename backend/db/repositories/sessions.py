"""Browser session rows: sign-ins, revocations (sign-out, ended by an admin) and per-subject cutoffs."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from backend.db.models import BrowserSession, BrowserSessionCutoff


def add_session(*, session: Session, row: BrowserSession) -> None:
    session.add(row)
    session.commit()


# Built once (it runs on every authenticated browser request): two primary-key lookups in one statement.
_STATE = select(
    select(BrowserSession.revoked_reason)
    .where(col(BrowserSession.sid) == bindparam("sid"), col(BrowserSession.revoked_at).is_not(None))
    .scalar_subquery(),
    select(BrowserSessionCutoff.ended_at).where(col(BrowserSessionCutoff.subject) == bindparam("subject"))
    .scalar_subquery(),
)


def session_state(*, session: Session | Connection, sid: str, subject: str) -> tuple[str | None, float | None]:
    """(why the sid was revoked, or None; the subject's cutoff, or None)."""
    row = session.execute(_STATE, {"sid": sid, "subject": subject}).one()
    return row[0], row[1]


def revoke_session(*, session: Session, sid: str, subject: str, signed_in_at: float, reason: str, by: str,
                   at: float) -> bool:
    """Revoke one sign-in; True when this call revoked it. A sid with no row (signed in before the row could be
    written, or its row purged) gets a revoked row, so the refusal does not depend on the log."""
    result = session.execute(update(BrowserSession)
                             .where(col(BrowserSession.sid) == sid, col(BrowserSession.revoked_at).is_(None))
                             .values(revoked_at=at, revoked_reason=reason, revoked_by=by))
    session.commit()
    if result.rowcount:
        return True
    if session.get(BrowserSession, sid) is not None:
        return False  # revoked before
    session.add(BrowserSession(sid=sid, subject=subject, signed_in_at=signed_in_at, revoked_at=at,
                               revoked_reason=reason, revoked_by=by))
    try:
        session.commit()
    except IntegrityError:  # written meanwhile by the same sign-out on another replica
        session.rollback()
        return False
    return True


def end_sessions(*, session: Session, subject: str, at: float, by: str, active_since: float) -> int:
    """Raise the subject's cutoff to `at` and revoke each logged sign-in still active (signed in after
    `active_since`, not revoked): the number revoked. The per-row revocation does not depend on the replicas'
    clocks agreeing; the cutoff also covers a sign-in being written at this moment."""
    _raise_cutoff(session=session, subject=subject, at=at, by=by)
    ended = session.execute(update(BrowserSession)
                            .where(col(BrowserSession.subject) == subject, col(BrowserSession.revoked_at).is_(None),
                                   col(BrowserSession.signed_in_at) > active_since,
                                   col(BrowserSession.signed_in_at) <= at)
                            .values(revoked_at=at, revoked_reason="ended", revoked_by=by)).rowcount
    session.commit()
    return int(ended or 0)


def _raise_cutoff(*, session: Session, subject: str, at: float, by: str) -> None:
    """An upsert that works on SQLite and PostgreSQL alike; a later cutoff is never moved back."""
    for _ in range(2):
        raised = session.execute(update(BrowserSessionCutoff)
                                 .where(col(BrowserSessionCutoff.subject) == subject,
                                        col(BrowserSessionCutoff.ended_at) < at)
                                 .values(ended_at=at, ended_by=by)).rowcount
        if raised or session.get(BrowserSessionCutoff, subject) is not None:
            session.commit()
            return
        session.add(BrowserSessionCutoff(subject=subject, ended_at=at, ended_by=by))
        try:
            session.commit()
            return
        except IntegrityError:  # another admin's end inserted it meanwhile: raise theirs instead
            session.rollback()


def purge_sessions(*, session: Session, before: float, limit: int) -> int:
    """Delete at most `limit` sign-ins and at most `limit` cutoffs older than `before` (what they refuse is
    expired anyway): bounded work, done now and then."""
    old = select(BrowserSession.sid).where(col(BrowserSession.signed_in_at) < before).limit(limit)
    gone = session.execute(delete(BrowserSession).where(col(BrowserSession.sid).in_(old))).rowcount
    old_cut = select(BrowserSessionCutoff.subject).where(col(BrowserSessionCutoff.ended_at) < before).limit(limit)
    gone += session.execute(delete(BrowserSessionCutoff)
                            .where(col(BrowserSessionCutoff.subject).in_(old_cut))).rowcount
    session.commit()
    return int(gone)
