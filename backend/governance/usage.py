"""Usage reports per tenant: totals by day, model, user or assistant over a date range."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from backend.db.engine import Database
from backend.db.repositories.usage import GroupBy, usage_totals
from backend.errors import Invalid

MAX_RANGE_DAYS = 366


class UsageService:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def report(self, *, tenant: str, start: date | None, end: date | None, group_by: GroupBy) -> dict:
        """Totals for [start, end] (inclusive days, UTC); default: the current month to date."""
        today = datetime.now(UTC).date()
        end = end or today
        start = start or end.replace(day=1)
        if start > end:
            raise Invalid(f"`from` ({start}) is after `to` ({end})", code="invalid_range")
        if (end - start).days > MAX_RANGE_DAYS:
            raise Invalid(f"the range is limited to {MAX_RANGE_DAYS} days", code="invalid_range")
        since = datetime.combine(start, time.min, tzinfo=UTC)
        until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
        with self.db.session() as session:
            rows = usage_totals(session=session, tenant=tenant, since=since, until=until, group_by=group_by)
        totals = {k: sum(r[k] for r in rows) for k in
                  ("requests", "cached", "prompt_tokens", "completion_tokens", "total_tokens")}
        totals["cost_usd"] = round(sum(r["cost_usd"] for r in rows), 8)
        return {"tenant": tenant, "from": start.isoformat(), "to": end.isoformat(), "group_by": group_by,
                "groups": rows, "totals": totals}
