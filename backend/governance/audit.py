"""The audit log: every login, denial, key change and prompt write; flags repeated denials.

Refusals cannot flood it: those from one source (the user, or the IP when nobody is signed in), in one tenant,
for one reason on one route (and action) within `group_window_s` are one row whose `count` grows (atomically,
on SQLite and PostgreSQL alike). The route is the matched method and pattern (`GET /api/t/{tenant}/documents/
{document_id}`), and every tenant that is not configured counts as one, so neither made-up ids nor made-up
tenant names open new rows. Every string that came with a request is cut to a bounded length before it is
stored, its NUL characters spelled out (PostgreSQL's text cannot hold them: the denial would go unrecorded).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from backend.auth.request_context import matched_route
from backend.db.engine import Database
from backend.db.models import AuditEvent, utcnow
from backend.db.repositories.audit import add_event, add_or_count, count_denials_since
from backend.governance.alert_once import AlertGate, LocalAlertGate
from backend.governance.metrics import NoMetrics

log = logging.getLogger("atrium.audit")

ID_CHARS = 200  # subject, tenant, reason, ip, dict keys
TEXT_CHARS = 1000  # route, and every string inside `detail`
DETAIL_ITEMS = 50  # entries kept of any list or object inside `detail`
DETAIL_DEPTH = 4  # deeper structures are stored as (clipped) text


def clip(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:  # a URL's %00 reaches the path (and a tenant from it): PostgreSQL refused the whole row
        text = text.replace("\x00", "\\x00")
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def clip_detail(value: Any, depth: int = 0) -> Any:
    """`value` with every string, list and object cut to a bounded size, and only what JSON can hold."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else f"(a {value.bit_length()}-bit number)"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return clip(value, TEXT_CHARS)
    if depth >= DETAIL_DEPTH:
        return clip(repr(value), TEXT_CHARS)
    if isinstance(value, dict):
        items = list(value.items())
        out = {clip(k, ID_CHARS): clip_detail(v, depth + 1) for k, v in items[:DETAIL_ITEMS]}
        if len(items) > DETAIL_ITEMS:
            out["…"] = f"{len(items) - DETAIL_ITEMS} more entries"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_list = [clip_detail(v, depth + 1) for v in seq[:DETAIL_ITEMS]]
        if len(seq) > DETAIL_ITEMS:
            out_list.append(f"… {len(seq) - DETAIL_ITEMS} more")
        return out_list
    return clip(str(value), TEXT_CHARS)


class AuditLog:
    def __init__(self, *, db: Database, denial_threshold: int = 10, window_s: int = 300, group_window_s: int = 60,
                 known_tenant: Callable[[str], bool] | None = None, alerts: AlertGate | None = None,
                 metrics: NoMetrics | None = None) -> None:
        self.db = db
        self.metrics = metrics or NoMetrics()  # denials by tenant and reason (governance/metrics.py)
        self.threshold = denial_threshold
        self.window_s = window_s
        self.group_window_s = group_window_s
        self.known_tenant = known_tenant or (lambda _tenant: True)
        # Who raises a source's suspicious_access this window: this process, or one replica of all (Redis).
        self.alerts: AlertGate = alerts or LocalAlertGate()

    def record(self, kind: str, *, subject: str | None = None, tenant: str | None = None,
               route: str | None = None, ip: str | None = None, status: int | None = None,
               reason: str | None = None, detail: dict | None = None) -> AuditEvent:
        raw_route = route
        subject, tenant, ip, reason = (clip(v, ID_CHARS) for v in (subject, tenant, ip, reason))
        route = clip(route, TEXT_CHARS)
        event = AuditEvent(kind=kind, subject=subject, tenant=tenant, route=route, ip=ip, status=status,
                           reason=reason, detail=clip_detail(detail or {}))
        with self.db.session() as session:
            if kind == "denied":
                event = add_or_count(session=session, event=event, group_key=self._group_key(event, raw_route))
            else:
                event = add_event(session=session, event=event)
        if kind == "denied":
            self.metrics.denial(tenant=tenant, reason=reason)
            log.info("access denied", extra={"subject": subject, "tenant": tenant, "route": route, "ip": ip,
                                             "status": status, "reason": reason, "count": event.count})
            self._check_suspicious(subject=subject, ip=ip, tenant=tenant, route=route)
        return event

    def _group_key(self, event: AuditEvent, raw_route: str | None) -> str:
        source = f"subject:{event.subject}" if event.subject else f"ip:{event.ip}"
        tenant = event.tenant if event.tenant is None or self.known_tenant(event.tenant) else "(not configured)"
        route = (matched_route(raw_route) if raw_route else None) or event.route
        # What was attempted, where the route alone does not say (the chat's "chat:conversation": read, rename...).
        action = event.detail.get("action") if isinstance(event.detail.get("action"), str) else None
        window = int(event.created_at.timestamp() // self.group_window_s)
        parts = (event.kind, source, str(tenant), str(event.reason), str(event.status), str(route), str(action),
                 str(window))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def _check_suspicious(self, *, subject: str | None, ip: str | None, tenant: str | None,
                          route: str | None) -> None:
        since = utcnow() - timedelta(seconds=self.window_s)
        for who, value in (("subject", subject), ("ip", ip)):
            if not value:
                continue
            with self.db.session() as session:
                count = count_denials_since(session=session, since=since,
                                            subject=value if who == "subject" else None,
                                            ip=value if who == "ip" else None)
            if count < self.threshold:
                continue
            if not self.alerts.first(f"{who}:{value}", self.window_s):
                continue  # once per window (across replicas with Redis)
            log.warning("suspicious access: repeated denials",
                        extra={who: value, "denials": count, "window_s": self.window_s})
            with self.db.session() as session:
                add_event(session=session, event=AuditEvent(
                    kind="suspicious_access", subject=subject if who == "subject" else None,
                    ip=ip if who == "ip" else None, tenant=tenant, route=route,
                    reason=f"{count} denials for {who} {value} within {self.window_s}s",
                    detail={"by": who, "value": value, "denials": count}))
