"""Usage per tenant: reports (totals by day, model, user or assistant over a date range), and the writer of the
turn rows they are made of — durable, batched and idempotent (governance/usage_writer.py states the design)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from backend.db.engine import Database
from backend.db.repositories.usage import GroupBy, downgrade_totals, usage_per_day_and_model, usage_totals
from backend.errors import Invalid
from backend.governance.allowances import LEVEL_OF
from backend.governance.usage_writer import UsageWriter

__all__ = ["UsageService", "UsageWriter"]

MAX_RANGE_DAYS = 366


class UsageService:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def report(self, *, tenant: str, start: date | None, end: date | None, group_by: GroupBy) -> dict:
        """Totals for [start, end] (inclusive days, UTC); default: the current month to date."""
        start, end, since, until = _window(start, end)
        with self.db.session() as session:
            rows = usage_totals(session=session, tenant=tenant, since=since, until=until, group_by=group_by)
            downgrades = downgrade_totals(session=session, tenant=tenant, since=since, until=until)
        totals = {k: sum(r[k] for r in rows) for k in
                  ("requests", "internal_calls", "cached", "prompt_tokens", "completion_tokens", "total_tokens",
                   "downgraded")}
        totals["cost_usd"] = round(sum(r["cost_usd"] for r in rows), 8)
        for d in downgrades:  # the level whose budget was spent: the department's, a member's, an assistant's
            d["level"] = LEVEL_OF.get(d["reason"] or "")
        return {"tenant": tenant, "from": start.isoformat(), "to": end.isoformat(), "group_by": group_by,
                "groups": rows, "totals": totals, "downgrades": downgrades}

    def per_day_and_model(self, *, tenant: str, start: date, end: date) -> list[dict]:
        """report()'s figures per (day, model) over [start, end]: rows with `day`, `model` and the same keys."""
        _, _, since, until = _window(start, end)
        with self.db.session() as session:
            return usage_per_day_and_model(session=session, tenant=tenant, since=since, until=until)


def _window(start: date | None, end: date | None) -> tuple[date, date, datetime, datetime]:
    """(start, end, since, until) of a report: the inclusive UTC days checked, and the datetimes [since, until)."""
    today = datetime.now(UTC).date()
    end = end or today
    start = start or end.replace(day=1)
    if start > end:
        raise Invalid(f"`from` ({start}) is after `to` ({end})", code="invalid_range")
    if (end - start).days > MAX_RANGE_DAYS:
        raise Invalid(f"the range is limited to {MAX_RANGE_DAYS} days", code="invalid_range")
    if end >= date.max:  # the range ends at the next midnight, which date.max does not have
        raise Invalid(f"`to` ({end}) is out of range: the last day a report can cover is "
                      f"{date.max - timedelta(days=1)}", code="invalid_range")
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    return start, end, since, until
