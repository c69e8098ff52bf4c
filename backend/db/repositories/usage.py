"""Usage aggregates over chat turns (every model call is a ChatTurn row; tenant-filtered here)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal

from sqlalchemy import case, func, insert, literal
from sqlmodel import Session, col, select

from backend.db.models import ChatTurn
from backend.db.repositories.api_keys import charged_subjects

GroupBy = Literal["day", "model", "user", "assistant"]


_COLUMNS = [c.name for c in ChatTurn.__table__.columns if c.name != "id"]
_DEFAULTS = {name: f.default for name, f in ChatTurn.model_fields.items() if f.default_factory is None}
_FACTORIES = {name: f.default_factory for name, f in ChatTurn.model_fields.items() if f.default_factory is not None}


def new_turn(**values: Any) -> Any:
    """A ChatTurn-shaped record for the hot path. Building the SQLModel object costs ~0.8 ms of CPU per
    request (pydantic inspects every default_factory's signature); insert_turns only reads attributes."""
    record = SimpleNamespace(**_DEFAULTS)
    for name, factory in _FACTORIES.items():
        setattr(record, name, factory())  # type: ignore[misc]
    for name, value in values.items():
        setattr(record, name, value)
    return record


def insert_turns(*, session: Session, turns: list[Any]) -> list[int]:
    """Write usage rows in one INSERT .. RETURNING and one commit (no unit of work, no re-read): this runs
    for every model call. Sets each turn.id and returns the ids in order."""
    rows = [{c: getattr(t, c) for c in _COLUMNS} for t in turns]
    stmt = insert(ChatTurn).returning(ChatTurn.id, sort_by_parameter_order=True)
    ids = [int(i) for i in session.execute(stmt, rows).scalars()]
    session.commit()
    for turn, turn_id in zip(turns, ids, strict=True):
        turn.id = turn_id
    return ids


def sum_usage(*, session: Session, tenant: str, since: datetime, until: datetime | None = None,
              subject: str | None = None, assistant: str | None = None) -> tuple[int, float]:
    """(tokens, cost_usd) of the tenant's turns in [since, until); of one member's or one assistant's when given."""
    stmt = select(
        func.coalesce(func.sum(ChatTurn.prompt_tokens + ChatTurn.completion_tokens), 0),
        func.coalesce(func.sum(ChatTurn.cost_usd), 0.0),
    ).where(ChatTurn.tenant == tenant, ChatTurn.created_at >= since,
            ChatTurn.status != "streaming")  # an answer in progress is counted by its quota reservation
    if until is not None:
        stmt = stmt.where(ChatTurn.created_at < until)
    if subject is not None:  # a member: their calls and their API keys' (which count against them)
        stmt = stmt.where(col(ChatTurn.subject).in_(charged_subjects(session=session, tenant=tenant, member=subject)))
    if assistant is not None:
        stmt = stmt.where(ChatTurn.assistant == assistant)
    tokens, cost = session.exec(stmt).one()
    return int(tokens or 0), float(cost or 0.0)


NO_MODEL = "(no model call)"


def usage_totals(*, session: Session, tenant: str, since: datetime, until: datetime,
                 group_by: GroupBy) -> list[dict]:
    """Totals per group: requests (what users and callers asked), internal calls (query rewrites made for
    them: their tokens and cost are in the totals, they are not requests), cached, tokens, cost."""
    if group_by == "day":
        group = func.date(ChatTurn.created_at)
    elif group_by == "model":
        # "I don't know" answers and cached ones call no model
        group = func.coalesce(func.nullif(ChatTurn.model, ""), NO_MODEL)
    elif group_by == "user":
        group = ChatTurn.subject
    else:
        # A plain completion through a tier alias (OpenAI-compatible `model: fast`) serves no assistant.
        group = func.coalesce(func.nullif(ChatTurn.assistant, ""), literal("tier:").concat(ChatTurn.tier))
    stmt = _totals(tenant, since, until, group.label("key")).group_by(group).order_by(group)
    return [{"key": str(key) if key is not None else "", **_figures(rest)} for key, *rest in session.exec(stmt)]


def usage_per_day_and_model(*, session: Session, tenant: str, since: datetime, until: datetime) -> list[dict]:
    """usage_totals' figures per (day, model) at once: `day` (ISO date), `model` (NO_MODEL for turns that called
    none), then the same keys. The operators' per-model charts per day (governance/ops_charts.py)."""
    day, model = func.date(ChatTurn.created_at), func.coalesce(func.nullif(ChatTurn.model, ""), NO_MODEL)
    stmt = _totals(tenant, since, until, day, model).group_by(day, model).order_by(day, model)
    return [{"day": str(d), "model": str(m), **_figures(rest)} for d, m, *rest in session.exec(stmt)]


def downgrade_totals(*, session: Session, tenant: str, since: datetime, until: datetime) -> list[dict]:
    """The answers a spent budget moved to a cheaper tier in [since, until): how many, per tier routed, tier
    answered and the limit that refused the first (None on rows written before the reason was recorded)."""
    stmt = (
        select(ChatTurn.downgraded_from, ChatTurn.tier, ChatTurn.downgrade_reason, func.count())
        .where(*_counted(tenant, since, until), col(ChatTurn.downgraded_from).is_not(None))
        .group_by(ChatTurn.downgraded_from, ChatTurn.tier, ChatTurn.downgrade_reason)
        .order_by(func.count().desc(), ChatTurn.downgraded_from, ChatTurn.tier)
    )
    return [{"from_tier": str(first), "to_tier": str(tier or ""), "reason": reason, "answers": int(n)}
            for first, tier, reason, n in session.exec(stmt)]


def _counted(tenant: str, since: datetime, until: datetime) -> tuple:
    """The tenant's turns of the range that used tokens (a stopped turn's tokens were used too)."""
    return (ChatTurn.tenant == tenant, ChatTurn.created_at >= since, ChatTurn.created_at < until,
            col(ChatTurn.outcome).in_(("ok", "cancelled", "interrupted")))


def _totals(tenant: str, since: datetime, until: datetime, *keys: Any) -> Any:
    """SELECT keys..., requests (not internal), internal calls, cached, prompt and completion tokens, cost and
    downgraded answers over the tenant's counted turns in [since, until): the one definition of the usage API's
    numbers."""
    return select(
        *keys,
        func.sum(case((ChatTurn.channel == "internal", 0), else_=1)),
        func.sum(case((ChatTurn.channel == "internal", 1), else_=0)),
        func.sum(case((ChatTurn.cached, 1), else_=0)),
        func.sum(ChatTurn.prompt_tokens),
        func.sum(ChatTurn.completion_tokens),
        func.sum(ChatTurn.cost_usd),
        func.sum(case((col(ChatTurn.downgraded_from).is_not(None), 1), else_=0)),
    ).where(*_counted(tenant, since, until))


def _figures(row: list[Any]) -> dict[str, Any]:
    requests, internal, cached, pt, ct, cost, downgraded = row
    return {"requests": int(requests or 0), "internal_calls": int(internal or 0), "cached": int(cached or 0),
            "prompt_tokens": int(pt or 0), "completion_tokens": int(ct or 0),
            "total_tokens": int(pt or 0) + int(ct or 0), "cost_usd": round(float(cost or 0.0), 8),
            "downgraded": int(downgraded or 0)}
