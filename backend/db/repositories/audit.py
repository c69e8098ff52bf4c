"""Audit events: logins, denials, key lifecycle, prompt writes, suspicious access."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from backend.db.models import AuditEvent


def add_event(*, session: Session, event: AuditEvent) -> AuditEvent:
    session.add(event)
    session.commit()
    session.refresh(event)
    return event


def add_or_count(*, session: Session, event: AuditEvent, group_key: str) -> AuditEvent:
    """Insert `event` as the first of its group, or add one to the group's row: one atomic statement (INSERT ... ON
    CONFLICT on the unique group_key), so concurrent requests on any number of replicas never lose a count."""
    table = AuditEvent.__table__
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    values = {name: getattr(event, name) for name in ("created_at", "kind", "subject", "tenant", "route", "ip",
                                                      "status", "reason", "detail")}
    stmt = insert(table).values(**values, count=1, last_at=event.created_at, group_key=group_key)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.group_key],
                                      set_={"count": table.c["count"] + 1, "last_at": stmt.excluded.last_at})
    event_id = session.connection().execute(stmt.returning(table.c.id)).scalar_one()
    session.commit()
    stored = session.get(AuditEvent, event_id, populate_existing=True)
    assert stored is not None
    return stored


def list_events(
    *, session: Session, tenant: str | None = None, kind: str | None = None, subject: str | None = None,
    limit: int = 100, exclude_kinds: tuple[str, ...] = (), exclude_reasons: tuple[str, ...] = (),
    before_id: int | None = None, since: datetime | None = None, until: datetime | None = None,
    exclude_tenants: Collection[str] = (),
) -> list[AuditEvent]:
    """Newest first; `before_id` pages back (the last id of the previous page), `since`/`until` bound the time;
    `exclude_tenants`: not these tenants' events (those of other deployment groups)."""
    stmt = _without_tenants(select(AuditEvent), exclude_tenants)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.created_at < until)
    if tenant is not None:
        stmt = stmt.where(AuditEvent.tenant == tenant)
    if kind is not None:
        stmt = stmt.where(AuditEvent.kind == kind)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    if exclude_kinds:
        stmt = stmt.where(col(AuditEvent.kind).not_in(exclude_kinds))
    if exclude_reasons:  # NULL reasons stay (NOT IN would drop them)
        stmt = stmt.where(or_(col(AuditEvent.reason).is_(None), col(AuditEvent.reason).not_in(exclude_reasons)))
    return list(session.exec(stmt.order_by(col(AuditEvent.id).desc()).limit(limit)))


def _without_tenants(stmt, tenants: Collection[str]):  # noqa: ANN001, ANN202 - a select, unchanged in type
    if not tenants:
        return stmt
    # NULL tenants (sign-ins, operators' reads) stay: NOT IN alone would drop them.
    return stmt.where(or_(col(AuditEvent.tenant).is_(None), col(AuditEvent.tenant).not_in(list(tenants))))


def list_denials(*, session: Session, sign_in_pages: tuple[str, ...], sign_in_prompts: bool,
                 limit: int = 100, exclude_tenants: Collection[str] = ()) -> list[AuditEvent]:
    """Denials, newest first, in two sets: the sign-in prompts (an anonymous 401 `not_authenticated` on one of
    `sign_in_pages`, i.e. a visit before signing in) when `sign_in_prompts`, else every other denial."""
    subject, status, reason, route = (col(AuditEvent.subject), col(AuditEvent.status), col(AuditEvent.reason),
                                      col(AuditEvent.route))
    if sign_in_prompts:
        which = and_(subject.is_(None), status == 401, reason == "not_authenticated", route.in_(sign_in_pages))
    else:  # spelt out rather than NOT(...): a NULL column would make the negation NULL and drop the row
        which = or_(subject.is_not(None), status.is_(None), status != 401, reason.is_(None),
                    reason != "not_authenticated", route.is_(None), route.not_in(sign_in_pages))
    stmt = _without_tenants(select(AuditEvent).where(AuditEvent.kind == "denied", which), exclude_tenants)
    return list(session.exec(stmt.order_by(col(AuditEvent.id).desc()).limit(limit)))


def count_denials_since(*, session: Session, since: datetime, subject: str | None, ip: str | None) -> int:
    """Refusals, counted (a grouped row stands for `count` of them), in rows whose latest refusal is since `since`."""
    conds = []
    if subject:
        conds.append(AuditEvent.subject == subject)
    if ip:
        conds.append(AuditEvent.ip == ip)
    if not conds:
        return 0
    latest = func.coalesce(col(AuditEvent.last_at), col(AuditEvent.created_at))
    stmt = (
        select(func.coalesce(func.sum(col(AuditEvent.count)), 0))
        .where(AuditEvent.kind == "denied", latest >= since, or_(*conds))
    )
    return int(session.exec(stmt).one())
