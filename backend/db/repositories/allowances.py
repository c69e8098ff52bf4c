"""Raised member allowances (tenant admins, one member, one month): tenant-filtered here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from backend.db.models import ChatTurn, MemberAllowance
from backend.db.repositories.api_keys import key_owners


def current_allowance(*, session: Session, tenant: str, subject: str, month: str) -> MemberAllowance | None:
    """The latest raise for this member and month (YYYYMM), or None (the configured allowance applies)."""
    stmt = (select(MemberAllowance)
            .where(MemberAllowance.tenant == tenant, MemberAllowance.subject == subject, MemberAllowance.month == month)
            .order_by(col(MemberAllowance.id).desc()).limit(1))
    return session.exec(stmt).first()


def month_allowances(*, session: Session, tenant: str, month: str) -> dict[str, MemberAllowance]:
    """subject -> the latest raise of the month, for the tenant's members who have one."""
    stmt = (select(MemberAllowance).where(MemberAllowance.tenant == tenant, MemberAllowance.month == month)
            .order_by(col(MemberAllowance.id)))
    return {row.subject: row for row in session.exec(stmt)}


def raise_allowance(*, session: Session, tenant: str, subject: str, month: str, tokens_per_day: int | None,
                    monthly_budget_usd: float | None, granted_by: str) -> MemberAllowance:
    row = MemberAllowance(tenant=tenant, subject=subject, month=month, tokens_per_day=tokens_per_day,
                          monthly_budget_usd=monthly_budget_usd, granted_by=granted_by)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def member_totals(*, session: Session, tenant: str, since: datetime,
                  subject: str | None = None) -> dict[str, tuple[int, float]]:
    """member -> (tokens, cost_usd) of the tenant's turns since `since` (one member's when given); turns in progress
    are counted by their reservations, not here. An API key's turns are its owner's (the allowance they count
    against); a key with no person is a member of its own (`key:<id>`)."""
    stmt = (select(ChatTurn.subject,
                   func.coalesce(func.sum(ChatTurn.prompt_tokens + ChatTurn.completion_tokens), 0),
                   func.coalesce(func.sum(ChatTurn.cost_usd), 0.0))
            .where(ChatTurn.tenant == tenant, ChatTurn.created_at >= since, ChatTurn.status != "streaming")
            .group_by(ChatTurn.subject))
    owners = key_owners(session=session, tenant=tenant)
    if subject is not None:
        stmt = stmt.where(col(ChatTurn.subject).in_([subject, *(k for k, o in owners.items() if o == subject)]))
    out: dict[str, tuple[int, float]] = {}
    for s, t, c in session.exec(stmt):
        member = owners.get(str(s), str(s))
        tokens, cost = out.get(member, (0, 0.0))
        out[member] = (tokens + int(t or 0), cost + float(c or 0.0))
    return out


def admitted_under(*, session: Session, tenant: str, since: datetime) -> dict[str, str]:
    """subject -> the member allowance their latest call since `since` was admitted under (their role or claim
    group chose it: the SQL rows are the only place a tenant admin's view can learn it from)."""
    latest = (select(func.max(ChatTurn.id))
              .where(ChatTurn.tenant == tenant, ChatTurn.created_at >= since, col(ChatTurn.allowance).is_not(None))
              .group_by(ChatTurn.subject))
    stmt = select(ChatTurn.subject, ChatTurn.allowance).where(col(ChatTurn.id).in_(latest))
    return {str(s): str(a) for s, a in session.exec(stmt)}


def has_turns(*, session: Session, tenant: str, subject: str) -> bool:
    """Whether `subject` ever made a call in the tenant (a member the usage report names)."""
    stmt = select(ChatTurn.id).where(ChatTurn.tenant == tenant, ChatTurn.subject == subject).limit(1)
    return session.exec(stmt).first() is not None
