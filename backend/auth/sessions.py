"""Browser sessions that end: a maximum lifetime counted from the sign-in, sign-out on the server, and admins
ending a user's sessions.

The session is Chainlit's HS256 token (cookie `access_token`, signed with CHAINLIT_AUTH_SECRET). Every sign-in
puts a server-made `sid` and `signed_in_at` (UTC epoch seconds) into the token's user metadata, and logs the
sign-in in SQL. Anything that re-signs the token (Chainlit re-issues fresh `iat`/`exp` with the same metadata)
keeps `signed_in_at`, so re-issuing never extends a session. Revocations live in the database, not in a process
cache, so every replica refuses a signed-out token at once; the check is one statement of two primary-key
lookups on a plain connection: measured 0.2 ms a verification on SQLite and 0.8 ms on a local PostgreSQL
(medians, signature check included, on a busy 2-core machine).

`SessionRegistry.verify` is the one verification of a browser token: the API's dependencies, the pages, the
sign-out middleware and Chainlit's own routes and socket (ui/session_tokens.py) all call it.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from backend.auth.claims import claims_to_principal
from backend.auth.guard import AuditSink, allowed
from backend.db.engine import Database
from backend.db.models import BrowserSession
from backend.db.repositories import sessions as repo
from backend.db.repositories.conversations import get_chat_user
from backend.errors import NotFound
from backend.tenants import TenantRegistry

SID, SIGNED_IN_AT = "sid", "signed_in_at"
# Rows stay a day past the maximum age: a replica whose clock runs behind still finds a revocation it needs.
PURGE_GRACE_S = 86_400.0
PURGE_BATCH = 100  # rows deleted per sign-in at most: the purge keeps pace (one row is added) and stays small

# Why a browser token is refused -> what the user is told (always: sign in again).
REFUSALS = {
    "invalid_session": "the session cookie is not valid (tampered with, or signed with another secret)",
    "session_outdated": "this session began before sessions were tracked",
    "session_expired": "this session reached its maximum length (your administrator sets it)",
    "session_signed_out": "this session was signed out",
    "session_ended": "an administrator ended this account's sessions",
}


@dataclass(frozen=True)
class SessionCheck:
    """A verified token's payload (None when refused), why it was refused, and whose it is when the signature
    held (for the audit of a refusal)."""

    payload: dict[str, Any] | None
    reason: str | None = None
    subject: str | None = None

    @property
    def message(self) -> str:
        return REFUSALS.get(self.reason or "", "not signed in") + ": sign in again at /chat"


@dataclass(frozen=True)
class SessionsEnded:
    subject: str
    ended: int  # active sessions (signed in within the maximum lifetime, not signed out) that this ended
    ended_at: float


def _secret() -> str | None:
    from chainlit.auth.jwt import get_jwt_secret  # set by app.create_app before anything signs a token

    return get_jwt_secret()


def _marks(payload: dict[str, Any]) -> tuple[str, str, float] | None:
    """(subject, sid, signed_in_at) of a token made at a sign-in since sessions are tracked, else None."""
    subject, metadata = payload.get("identifier"), payload.get("metadata")
    if not isinstance(metadata, dict):
        return None
    sid, at = metadata.get(SID), metadata.get(SIGNED_IN_AT)
    if not (isinstance(subject, str) and subject and isinstance(sid, str) and 0 < len(sid) <= 64
            and isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at)):
        return None
    return subject, sid, float(at)


class SessionRegistry:
    def __init__(self, *, db: Database, registry: TenantRegistry, max_age_s: float,
                 audit: AuditSink | None = None) -> None:
        self.db = db
        self.registry = registry
        self.max_age_s = max_age_s
        self.audit = audit  # where an admin's ending of sessions is recorded (refused or not)

    # -- sign-in ---------------------------------------------------------------------------------------------------

    def start(self, *, subject: str, provider: str) -> dict[str, Any]:
        """A new sign-in: its marks for the token's user metadata (logged before the token exists)."""
        marks = {SID: secrets.token_urlsafe(18), SIGNED_IN_AT: round(time.time(), 3)}
        with self.db.session() as session:
            repo.add_session(session=session, row=BrowserSession(sid=marks[SID], subject=subject, provider=provider,
                                                                 signed_in_at=marks[SIGNED_IN_AT]))
            repo.purge_sessions(session=session, before=time.time() - self.max_age_s - PURGE_GRACE_S,
                                limit=PURGE_BATCH)
        return marks

    # -- every request ---------------------------------------------------------------------------------------------

    def verify(self, token: str | None) -> SessionCheck:
        if not token:
            return SessionCheck(None, "no_session")
        secret = _secret()
        if not secret:
            return SessionCheck(None, "invalid_session")
        try:
            payload = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "iat"]})
        except jwt.ExpiredSignatureError:
            return SessionCheck(None, "session_expired")
        except jwt.PyJWTError:
            return SessionCheck(None, "invalid_session")
        marks = _marks(payload)
        if marks is None:
            return SessionCheck(None, "session_outdated", subject=_text(payload.get("identifier")))
        subject, sid, signed_in_at = marks
        # The earlier of the sign-in and the token's issue: a token cannot be older than its own iat.
        if time.time() - min(signed_in_at, float(payload["iat"])) > self.max_age_s:
            return SessionCheck(None, "session_expired", subject=subject)
        with self.db.engine.connect() as conn:  # a plain connection: no ORM session on the hot path
            revoked, cutoff = repo.session_state(session=conn, sid=sid, subject=subject)
        if revoked is not None:
            return SessionCheck(None, "session_signed_out" if revoked == "logout" else "session_ended",
                                subject=subject)
        if cutoff is not None and signed_in_at <= cutoff:
            return SessionCheck(None, "session_ended", subject=subject)
        return SessionCheck(payload, subject=subject)

    # -- sign-out and admins ---------------------------------------------------------------------------------------

    def sign_out(self, token: str | None) -> str | None:
        """Revoke the session of a token signed by us (even an expired one): its subject, or None when the token
        is not ours or predates session tracking (nothing to revoke)."""
        secret = _secret()
        if not token or not secret:
            return None
        try:
            payload = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            return None
        marks = _marks(payload)
        if marks is None:
            return None
        subject, sid, signed_in_at = marks
        with self.db.session() as session:
            repo.revoke_session(session=session, sid=sid, subject=subject, signed_in_at=signed_in_at,
                                reason="logout", by=subject, at=time.time())
        return subject

    def end(self, *, subject: str, by: str, tenant: str | None = None, route: str | None = None,
            ip: str | None = None) -> SessionsEnded:
        """End every session of `subject` signed in until now. With `tenant` (a tenant admin's request), only
        for a member of that tenant according to the claims of their latest sign-in; anyone else is exactly
        as unknown as a subject who never signed in (NotFound), so a tenant admin learns nothing about other
        tenants' users. Every call, refused or not, is an audit event (`route`, `ip`: the request's)."""
        audit = {"subject": by, "tenant": tenant, "route": route, "ip": ip}
        with self.db.session() as session:
            user = get_chat_user(session=session, identifier=subject)
        if user is None or (tenant is not None and not self._member(user.claims, tenant)):
            owner = f"tenant {tenant!r} has no user" if tenant is not None else "there is no user"
            if self.audit is not None:
                self.audit.record("denied", status=404, reason="unknown_subject", detail={"target": subject}, **audit)
            raise NotFound(f"{owner} {subject!r} who has signed in", code="unknown_subject")
        at = time.time()
        with self.db.session() as session:
            ended = repo.end_sessions(session=session, subject=subject, at=at, by=by,
                                      active_since=at - self.max_age_s)
        if self.audit is not None:
            self.audit.record("sessions_ended", status=200, detail={"target": subject, "ended": ended}, **audit)
        return SessionsEnded(subject=subject, ended=ended, ended_at=at)

    def _member(self, claims: object, tenant: str) -> bool:
        if not isinstance(claims, dict):
            return False
        try:
            return allowed(claims_to_principal(claims, self.registry, auth="session"), tenant, None)
        except ValueError:
            return False


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None
