"""Raised member allowances (tenant admins, one member, one month): tenant-filtered here."""

from __future__ import annotations

from sqlmodel import Session, col, select

from backend.db.models import MemberAllowance


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
