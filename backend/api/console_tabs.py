"""What each tab of the tenant console shows, from the same service functions as the REST API (the caller has
been admitted by backend/api/console.py: the `admin` permission in this tenant)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from backend.auth.api_keys import SCOPES
from backend.auth.principal import Principal
from backend.container import Services
from backend.errors import AtriumError
from backend.governance.ops_charts import days_before
from ui import charts
from ui.console_words import KINDS, REFUSAL_FIX, REFUSAL_FIXES, denial_words, failure_fix
from ui.console_words import SCOPES as SCOPE_WORDS

AUDIT_PAGE = 200
DOCUMENTS_SHOWN = 500


def size(n: int | None) -> str:
    if not n:
        return "0 B"
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:,.1f} GB"


def when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M")


def parse_day(value: str | None) -> date | None:
    """A page's date field: empty is none; anything else must be YYYY-MM-DD (ValueError names it)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not a date: write it YYYY-MM-DD, e.g. 2026-01-31") from None


# -- Knowledge ----------------------------------------------------------------------------------------------------


def knowledge(services: Services, principal: Principal, tenant: str) -> dict:
    docs = services.knowledge.list_documents(principal, tenant, limit=DOCUMENTS_SHOWN)
    bases = services.knowledge.knowledge_bases(principal, tenant)
    by_kb: dict[str, list[dict]] = defaultdict(list)
    for d in docs:
        by_kb[d["kb"]].append({**d, "size": size(d["size_bytes"]), "added": when(d["created_at"]),
                               "fix": failure_fix(d["error"]) if d["status"] == "failed" else None})
    names = sorted({b["kb"] for b in bases} | set(by_kb))
    knowledge_ids = {b["kb"]: b.get("knowledge_id") for b in bases}
    return {"bases": [(kb, knowledge_ids.get(kb), by_kb.get(kb, [])) for kb in names],
            "failed": sum(1 for d in docs if d["status"] == "failed"), "capped": len(docs) >= DOCUMENTS_SHOWN,
            "max_upload": size(services.knowledge.max_upload_bytes),
            "refusal_fixes": {**REFUSAL_FIXES, "": REFUSAL_FIX}}


# -- Keys ------------------------------------------------------------------------------------------------------------


def keys(services: Services, tenant: str) -> dict:
    assert services.keys is not None
    rows = []
    for review in services.keys.review(tenant):
        k = review.key
        rows.append({"id": k.id, "name": k.name or "(no name)", "scopes": list(k.scopes), "state": review.state,
                     "created_by": k.created_by or "", "created": when(k.created_at),
                     "last_used": when(k.last_used_at) or "never", "expires": when(k.expires_at) or "never",
                     "owner": k.owner or "", "owner_status": review.owner_status})
    return {"keys": rows, "scopes": [(s, SCOPE_WORDS.get(s, "")) for s in sorted(SCOPES)],
            "default_days": services.settings.api_key_days}


# -- Usage -----------------------------------------------------------------------------------------------------------


def usage(services: Services, tenant: str, start: str | None, end: str | None) -> dict:
    assert services.usage is not None
    today = datetime.now(UTC).date()
    try:
        first, last = parse_day(start), parse_day(end)
        last = last or today
        first = first or days_before(last, 29)
        reports = {g: services.usage.report(tenant=tenant, start=first, end=last, group_by=g)
                   for g in ("day", "assistant", "user", "model")}
    except (ValueError, AtriumError) as exc:
        return {"error": str(exc), "start": start or "", "end": end or ""}
    month = services.usage.report(tenant=tenant, start=today.replace(day=1), end=today, group_by="day")
    today_tokens = sum(r["total_tokens"] for r in month["groups"] if r["key"] == today.isoformat())
    quotas = services.registry.get(tenant).quotas  # type: ignore[union-attr]
    per_day = {r["key"]: r for r in reports["day"]["groups"]}
    series = {name: charts.days(first, last, {k: r[name] for k, r in per_day.items()})
              for name in ("requests", "total_tokens", "cost_usd")}
    budget = quotas.monthly_budget_usd
    return {
        "start": first.isoformat(), "end": last.isoformat(), "today": today.isoformat(),
        "totals": reports["day"]["totals"], "reports": reports,
        "quotas": quotas, "today_tokens": today_tokens, "month_cost": month["totals"]["cost_usd"],
        "month_share": (month["totals"]["cost_usd"] / budget) if budget else None,
        "ranges": [("Last 7 days", today - timedelta(days=6), today), ("Last 30 days", today - timedelta(days=29),
                   today), ("This month", today.replace(day=1), today)],
        "charts": {
            "requests": charts.bar_chart(series["requests"], chart_id="chart-requests", title="Requests per day",
                                         unit="requests"),
            "tokens": charts.bar_chart(series["total_tokens"], chart_id="chart-tokens", title="Tokens per day",
                                       unit="tokens", limit=charts.Limit(quotas.tokens_per_day, "Daily token quota")
                                       if quotas.tokens_per_day else None),
            # Usage answered only by free models (the in-process one) has no cost: "No usage" under bars read wrong.
            "cost": charts.line_chart(series["cost_usd"], chart_id="chart-cost", title="Cost per day (USD)",
                                      unit="USD", fmt=charts.usd,
                                      empty=charts.NO_COST if any(v for _, v in series["requests"]) else charts.EMPTY),
        },
        "usd": charts.usd,
        "members": members(services, tenant) if quotas.has_member_limits else None,
        "downgrades": [{**d, "why": LIMIT_WORDS.get(d["reason"] or "", "a spent budget")}
                       for d in reports["day"]["downgrades"]],
        "on_budget": quotas.on_budget,
    }


# Which budget was spent when an answer was moved to a cheaper tier (QuotaExceeded.limit).
LIMIT_WORDS = {
    "tokens_per_day": "the department's tokens for the day",
    "monthly_budget_usd": "the department's monthly budget",
    "member_tokens_per_day": "a member's tokens for the day",
    "member_monthly_budget_usd": "a member's monthly allowance",
    "assistant_monthly_budget_usd": "the assistant's monthly budget",
}


def members(services: Services, tenant: str) -> list[dict]:
    """Every member who used the tenant this month (or was given a raise), against their allowance: the same
    figures as the usage API's report by user."""
    assert services.member_usage is not None
    rows = []
    for subject, f in services.member_usage.members(tenant).items():
        today, month = f["today"], f["month"]
        rows.append({"subject": subject, "source": f["allowance"]["source"], "raised": f["allowance"]["raised"],
                     "tokens": today["tokens"], "tokens_limit": today["limit"],
                     "tokens_share": _share(today["tokens"], today["limit"]),
                     "cost": month["cost_usd"], "cost_limit": month["limit_usd"],
                     "cost_share": _share(month["cost_usd"], month["limit_usd"])})
    return rows


def _share(used: float, limit: float | None) -> float | None:
    """How much of a limit is used (1 when a limit of 0 blocks), for the meter; None without a limit."""
    if limit is None:
        return None
    return min(1.0, used / limit) if limit else 1.0


# -- Audit -----------------------------------------------------------------------------------------------------------


def audit(services: Services, tenant: str, *, kind: str | None, person: str | None, start: str | None,
          end: str | None, before: int | None) -> dict:
    filters = {"kind": kind or "", "person": person or "", "start": start or "", "end": end or ""}
    try:
        first, last = parse_day(start), parse_day(end)
        if last is not None and last >= date.max:  # the filter ends at the next midnight, which date.max has not
            raise ValueError(f"`to` ({last}) is out of range: the last day to filter on is "
                             f"{date.max - timedelta(days=1)}")
    except ValueError as exc:
        return {"error": str(exc), "filters": filters, "kinds": sorted(KINDS.items()), "events": []}
    since = datetime.combine(first, time.min, tzinfo=UTC) if first else None
    until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) if last else None
    events = services.audit_view.tenant(tenant, kind=kind, subject=person, limit=AUDIT_PAGE, before=before,
                                        since=since, until=until)
    rows = [{"id": e.id, "when": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "iso": e.created_at.isoformat(),
             "kind": e.kind, "kind_words": KINDS.get(e.kind, e.kind), "subject": e.subject or "—",
             "route": e.route or "", "status": e.status, "reason": e.reason or "", "count": e.count,
             "words": denial_words(e.reason, e.detail) if e.kind == "denied" else _what(e.kind, e.detail)}
            for e in events]
    return {"filters": filters, "kinds": sorted(KINDS.items()), "events": rows,
            "older": rows[-1]["id"] if len(rows) == AUDIT_PAGE else None}


def _what(kind: str, detail: dict) -> str:
    """A change in a sentence, from what its event carries (an unknown kind: its fields, as before)."""
    said = _SENTENCES.get(kind)
    if said:
        return said(detail)
    parts = [f"{k.replace('_', ' ')}: {v}" for k, v in sorted(detail.items())
             if isinstance(v, str | int | float | bool) and k != "message"][:4]
    return "; ".join(parts)


def _key_created(d: dict) -> str:
    expires = f"expires {str(d['expires_at'])[:10]}" if d.get("expires_at") else "never expires"
    scopes = ", ".join(d.get("scopes") or []) or "no scope"
    return f"Created the API key “{d.get('name') or d.get('key_id')}” ({scopes}; {expires})."


def _uploaded(d: dict) -> str:
    added, refused = len(d.get("accepted") or []), d.get("rejected") or []
    text = f"Added {added} document(s) to “{d.get('kb', 'default')}”." if added else "Nothing added."
    if refused:
        text += " Refused: " + "; ".join(f"{r.get('filename')} ({r.get('error')})" for r in refused[:3])
    return text


_SENTENCES = {
    "key_created": _key_created,
    "key_revoked": lambda d: f"Revoked the API key {d.get('key_id')}"
                             + (f" (made with key {d['via']}, revoked with it)." if d.get("via") else "."),
    "documents_uploaded": _uploaded,
    "document_deleted": lambda d: f"Deleted document {d.get('document_id')} and its passages.",
    "documents_reindexed": lambda d: f"Queued {d.get('documents', 0)} document(s) to be read again"
                                     + (", failed ones included." if d.get("include_failed") else "."),
}
