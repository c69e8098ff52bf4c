"""What the quotas read from SQL, each in a session of its own (called from threads): a counter's seed (the usage
so far), the owner whose allowance an API key's turn counts against, a member's raised allowance this month."""

from __future__ import annotations

from datetime import datetime

from backend.db.engine import Database
from backend.db.models import MemberAllowance
from backend.db.repositories.allowances import current_allowance
from backend.db.repositories.api_keys import key_owners
from backend.db.repositories.usage import sum_usage


def sum_usage_seed(db: Database, tenant: str, since: datetime, *, subject: str | None = None,
                   assistant: str | None = None) -> tuple[int, float]:
    with db.session() as session:
        return sum_usage(session=session, tenant=tenant, since=since, subject=subject, assistant=assistant)


def member_of(db: Database, tenant: str, subject: str) -> str:
    """Whose allowance a recorded turn counts against: a key's owner (auth/principal.py Principal.member)."""
    if not subject.startswith("key:"):
        return subject
    with db.session() as session:
        return key_owners(session=session, tenant=tenant).get(subject, subject)


def raised_allowance(db: Database, tenant: str, subject: str, month: str) -> MemberAllowance | None:
    with db.session() as session:
        row = current_allowance(session=session, tenant=tenant, subject=subject, month=month)
        if row is not None:
            session.expunge(row)
        return row
