"""Per-day series for the operators' charts on /admin: the turns' latency and errors, the audit log's refusals and
denials, and failed ingestion jobs. Requests, tokens and cost come from usage.py's usage_totals (the usage API's
own numbers); these are what it does not give."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from backend.db.models import AuditEvent, ChatTurn, KbDocument

NO_MODEL_CALL = ("quota", "refused")  # chat_turn outcomes of turns refused before a model was called


def turn_health(*, session: Session, since: datetime, until: datetime,
                tenants: Collection[str]) -> dict[str, dict]:
    """Per day (ISO date): `calls` (finished model calls), `errors` (outcome `error`), `quota` (turns a quota or
    rate limit refused: a 429 with a usage row, never an audit event) and `p50`/`p95` (nearest rank: the smallest
    recorded latency, in ms, with at least that share at or below it) of answered turns (0, meaning not recorded, is
    left out; no answered turn: no p50/p95) over `tenants`' turns."""
    day = func.date(ChatTurn.created_at)
    where = (ChatTurn.created_at >= since, ChatTurn.created_at < until, col(ChatTurn.tenant).in_(list(tenants)),
             ChatTurn.status != "streaming")
    out: dict[str, dict] = defaultdict(lambda: {"calls": 0, "errors": 0, "quota": 0})
    for key, outcome, count in session.execute(
            select(day, ChatTurn.outcome, func.count()).where(*where).group_by(day, ChatTurn.outcome)):
        if outcome == "quota":
            out[str(key)]["quota"] += int(count)
        if outcome in NO_MODEL_CALL:  # refused before any model was called: not a call that could fail
            continue
        out[str(key)]["calls"] += int(count)
        if outcome == "error":
            out[str(key)]["errors"] += int(count)
    # The two ranks are picked in SQL: a year's range hands back two rows a day, not every turn's latency.
    # Nearest rank ceil(q*n) in integer arithmetic (both SQLite and PostgreSQL): (n+1)//2 and (19n+19)//20.
    ranked = (select(day.label("day"), ChatTurn.latency_ms.label("ms"),
                     func.row_number().over(partition_by=day, order_by=ChatTurn.latency_ms).label("rank"),
                     func.count().over(partition_by=day).label("n"))
              .where(*where, ChatTurn.outcome == "ok", ChatTurn.latency_ms > 0).subquery())
    p50, p95 = (ranked.c.n + 1) // 2, (19 * ranked.c.n + 19) // 20
    for key, ms, rank, p50_rank, p95_rank in session.execute(
            select(ranked.c.day, ranked.c.ms, ranked.c.rank, p50, p95).where(
                or_(ranked.c.rank == p50, ranked.c.rank == p95))):
        if rank == p50_rank:
            out[str(key)]["p50"] = float(ms)
        if rank == p95_rank:
            out[str(key)]["p95"] = float(ms)
    return dict(out)


def refusals_per_day(*, session: Session, since: datetime, until: datetime, sign_in_pages: tuple[str, ...],
                     exclude_tenants: Collection[str] = ()) -> dict[str, dict[str, int]]:
    """Per day: `refusals` (denied with status 429: quotas, rate limits) and `denials` (every other refusal), each
    counted with its repeats (`count`); the anonymous visits of `sign_in_pages` before signing in are left out."""
    day = func.date(AuditEvent.created_at)
    subject, status, reason, route = (col(AuditEvent.subject), col(AuditEvent.status), col(AuditEvent.reason),
                                      col(AuditEvent.route))
    # as list_denials: spelt out rather than NOT(...), which a NULL column would turn NULL (the row dropped)
    not_sign_in = or_(subject.is_not(None), status.is_(None), status != 401, reason.is_(None),
                      reason != "not_authenticated", route.is_(None), route.not_in(sign_in_pages))
    stmt = (select(day, AuditEvent.status == 429, func.sum(AuditEvent.count))
            .where(AuditEvent.kind == "denied", AuditEvent.created_at >= since, AuditEvent.created_at < until,
                   not_sign_in)
            .group_by(day, AuditEvent.status == 429))
    if exclude_tenants:  # NULL tenants (sign-ins, operators) stay
        stmt = stmt.where(or_(col(AuditEvent.tenant).is_(None), col(AuditEvent.tenant).not_in(list(exclude_tenants))))
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"refusals": 0, "denials": 0})
    for key, is_refusal, count in session.execute(stmt):
        out[str(key)]["refusals" if is_refusal else "denials"] += int(count or 0)
    return dict(out)


def failed_jobs(*, session: Session, tenants: Collection[str]) -> dict[str, int]:
    """Per tenant: documents whose ingestion failed (waiting for a reindex); every tenant named is in the answer."""
    out = {t: 0 for t in tenants}
    stmt = (select(KbDocument.tenant, func.count()).where(KbDocument.status == "failed",
                                                          col(KbDocument.tenant).in_(list(tenants)))
            .group_by(col(KbDocument.tenant)))
    for tenant, count in session.execute(stmt):
        out[tenant] = int(count)
    return out
