"""backend/db/repositories/audit.py: tenant B's audit log never lists tenant A's events, and recording B's events
(single or grouped refusals) never changes A's rows."""

from __future__ import annotations

import pytest

from backend.db.models import AuditEvent, utcnow
from backend.db.repositories import audit as repo
from tests.db.tenancy import A, B, assert_all_covered, rows_of

UNSCOPED = {
    "list_denials": "the operators' page: every tenant's refusals (platform admins only, audited as admin_access)",
    "count_denials_since": "suspicious access: one subject's or IP's refusals wherever they were refused",
    "list_events": "tenant=None is the operators' view of every tenant (tested: a tenant's view is its own)",
}


def _event(tenant: str, kind: str = "denied", **kw: object) -> AuditEvent:
    values: dict = {"kind": kind, "subject": "mallory", "tenant": tenant, "route": f"/api/t/{tenant}/documents",
                    "ip": "10.0.0.9", "status": 403, "reason": "missing_role", **kw}
    return AuditEvent(**values)


@pytest.fixture
def seeded(db):
    """Each tenant: a login, a refusal and a grouped refusal (counted twice)."""
    with db.session() as s:
        for tenant in (A, B):
            repo.add_event(session=s, event=_event(tenant, "login", status=200, reason=None))
            repo.add_event(session=s, event=_event(tenant))
            for _ in range(2):
                repo.add_or_count(session=s, event=_event(tenant, reason="tenant_mismatch"),
                                  group_key=f"{tenant}:mallory:tenant_mismatch")
    return db


def test_every_function_is_tested_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_add_event(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.add_event(session=s, event=_event(B, "key_created", status=None, reason=None))
    assert rows_of(seeded, A) == before


def test_add_or_count(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        grouped = repo.add_or_count(session=s, event=_event(B, reason="tenant_mismatch"),
                                    group_key=f"{B}:mallory:tenant_mismatch")
    assert (grouped.tenant, grouped.count) == (B, 3)
    assert rows_of(seeded, A) == before


def test_list_events(seeded):
    with seeded.session() as s:
        events = repo.list_events(session=s, tenant=B)
        assert len(events) == 3 and {e.tenant for e in events} == {B}
        assert {e.tenant for e in repo.list_events(session=s, tenant=B, kind="denied")} == {B}
        paged = repo.list_events(session=s, tenant=B, before_id=events[0].id + 1, since=utcnow().replace(year=2000),
                                 exclude_kinds=("login",), exclude_reasons=("missing_role",))
        assert [(e.tenant, e.reason) for e in paged] == [(B, "tenant_mismatch")]
        assert {e.tenant for e in repo.list_events(session=s)} == {A, B}  # the operators' view
