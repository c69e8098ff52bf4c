"""The audit log: every login, denial, key change and prompt write; flags repeated denials."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from backend.auth.oidc import CALLBACK_PATH, OidcLoginError
from backend.db.engine import Database
from backend.db.models import AuditEvent, utcnow
from backend.db.repositories.audit import add_event, count_denials_since

log = logging.getLogger("atrium.audit")


class AuditLog:
    def __init__(self, *, db: Database, denial_threshold: int = 10, window_s: int = 300) -> None:
        self.db = db
        self.threshold = denial_threshold
        self.window_s = window_s
        self._flagged: dict[str, float] = {}  # subject/ip -> window start when last flagged
        self._lock = threading.Lock()

    def record(self, kind: str, *, subject: str | None = None, tenant: str | None = None,
               route: str | None = None, ip: str | None = None, status: int | None = None,
               reason: str | None = None, detail: dict | None = None) -> AuditEvent:
        event = AuditEvent(kind=kind, subject=subject, tenant=tenant, route=route, ip=ip, status=status,
                           reason=reason, detail=detail or {})
        with self.db.session() as session:
            event = add_event(session=session, event=event)
        if kind == "denied":
            log.info("access denied", extra={"subject": subject, "tenant": tenant, "route": route, "ip": ip,
                                             "status": status, "reason": reason})
            self._check_suspicious(subject=subject, ip=ip, tenant=tenant, route=route)
        return event

    def login_denied(self, exc: OidcLoginError, *, ip: str | None) -> AuditEvent:
        """A refused OIDC login (bad state, nonce, ID token, ...): a denial like any other."""
        return self.record("denied", subject=exc.subject, route=CALLBACK_PATH, ip=ip, status=401, reason=exc.reason,
                           detail={"method": "oidc", "message": exc.message})

    def _check_suspicious(self, *, subject: str | None, ip: str | None, tenant: str | None,
                          route: str | None) -> None:
        since = utcnow() - timedelta(seconds=self.window_s)
        now = time.monotonic()
        for who, value in (("subject", subject), ("ip", ip)):
            if not value:
                continue
            with self.db.session() as session:
                count = count_denials_since(session=session, since=since,
                                            subject=value if who == "subject" else None,
                                            ip=value if who == "ip" else None)
            if count < self.threshold:
                continue
            key = f"{who}:{value}"
            with self._lock:
                last = self._flagged.get(key)
                if last is not None and now - last < self.window_s:
                    continue  # once per window
                self._flagged[key] = now
            log.warning("suspicious access: repeated denials",
                        extra={who: value, "denials": count, "window_s": self.window_s})
            with self.db.session() as session:
                add_event(session=session, event=AuditEvent(
                    kind="suspicious_access", subject=subject if who == "subject" else None,
                    ip=ip if who == "ip" else None, tenant=tenant, route=route,
                    reason=f"{count} denials for {who} {value} within {self.window_s}s",
                    detail={"by": who, "value": value, "denials": count}))
