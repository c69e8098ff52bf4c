"""The audit log read back (governance/audit_view.py, operators.py) without HTTP: an operator's read is recorded
before anything is read, a tenant admin's view says nothing about other tenants, the operator page records every
visit and refusal, and nothing handed out is an ORM row."""

from __future__ import annotations

import pytest

from backend.auth.api_keys import issue_key
from backend.auth.principal import Principal
from backend.db.models import AuditEvent
from backend.errors import NotFound
from backend.governance.audit_view import OTHER_TENANTS_KEY, AuditEntry


def kinds(services, kind: str) -> list[AuditEntry]:
    return services.audit_view.events(kind=kind, limit=100)


def test_an_operators_read_is_recorded_first_and_an_unknown_tenant_is_not_found(services):
    services.audit.record("denied", subject="probe", tenant="sales", route="/x", status=403, reason="test")
    events = services.audit_view.platform("root", route="/api/admin/audit", ip="10.0.0.1", tenant="sales")
    # The read itself is among what it reads: recorded before the query.
    assert [e.kind for e in events] == ["admin_access", "denied"]
    assert all(isinstance(e, AuditEntry) and not isinstance(e, AuditEvent) for e in events)
    access = events[0]
    assert (access.subject, access.tenant, access.route, access.ip, access.status) == \
        ("root", "sales", "/api/admin/audit", "10.0.0.1", 200)
    assert access.detail == {"kind": None, "limit": 100}
    with pytest.raises(NotFound) as exc:
        services.audit_view.platform("root", route="/api/admin/audit", ip=None, tenant="nosuch")
    assert exc.value.code == "tenant_not_found" and "sales" in exc.value.message
    assert len(kinds(services, "admin_access")) == 1  # the refused read left no access row


def test_a_tenant_admin_sees_nothing_of_other_tenants(services):
    own = issue_key(db=services.db, tenant="sales", scopes=["chat"]).key.id
    other = issue_key(db=services.db, tenant="finance", scopes=["chat"]).key.id
    record = services.audit.record
    record("denied", subject=f"key:{own}", tenant="sales", route="/a", status=403, reason="missing_scope")
    record("denied", subject=f"key:{other}", tenant="sales", route="/b", status=403, reason="tenant_mismatch",
           detail={"member_of": ["finance"], "message": "kept"})
    record("denied", subject="mallory", tenant="sales", route="/c", status=404, reason="other_tenants_document")
    record("suspicious_access", subject="mallory", tenant="sales", reason="many")
    events = services.audit_view.tenant("sales")
    assert [e.route for e in events] == ["/b", "/a"]
    assert events[0].subject == OTHER_TENANTS_KEY and events[0].detail == {"message": "kept"}
    assert events[1].subject == f"key:{own}"
    # The operators see it all.
    everything = services.audit_view.platform("root", route="/r", ip=None, tenant="sales")
    assert {e.kind for e in everything} == {"denied", "suspicious_access", "admin_access"}


def test_the_operator_page_records_every_visit_and_refusal(services):
    operators = services.operators
    alice = Principal(subject="alice", name="Alice", tenants={"sales": frozenset({"member"})})
    root = Principal(subject="root", name="Root", platform_roles=frozenset({"platform_admin"}))
    assert operators.admit_page(None, page="admin", route="/admin", ip="1.2.3.4") == "not_authenticated"
    assert operators.admit_page(alice, page="admin", route="/admin", ip="1.2.3.4") == "missing_role"
    denied = kinds(services, "denied")
    assert [(e.subject, e.status, e.reason, e.detail["member_of"]) for e in reversed(denied)] == \
        [(None, 401, "not_authenticated", []), ("alice", 403, "missing_role", ["sales"])]
    assert kinds(services, "admin_access") == []
    assert operators.admit_page(root, page="admin", route="/admin", ip="1.2.3.4") is None
    [access] = kinds(services, "admin_access")
    assert (access.subject, access.route, access.detail) == ("root", "/admin", {"page": "admin"})
    overview = operators.overview(sign_in_pages=("/admin",), denials_shown=50)
    assert [e.subject for e in overview.denials] == ["alice"]
    assert [e.reason for e in overview.sign_in_prompts] == ["not_authenticated"]
    assert {t["id"] for t in overview.tenants} == set(services.registry.ids())
    assert overview.tenants[0]["usage"]["requests"] == 0 and not overview.suspicious_capped


def test_the_tenant_list_is_an_audited_read(services):
    tenants = services.operators.tenants("root", route="/api/admin/tenants", ip="10.0.0.2")
    assert [t["id"] for t in tenants] == services.registry.ids()
    [access] = kinds(services, "admin_access")
    assert (access.subject, access.tenant, access.ip) == ("root", None, "10.0.0.2")
