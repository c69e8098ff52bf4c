"""Claims -> Principal for IdP-style claims (Keycloak, Okta, Entra ID), RBAC, login switches, and the
audit log's repeated-denial detection."""

from __future__ import annotations

import logging

import pytest

from backend.auth.claims import claims_to_principal, missing_access_hint
from backend.auth.principal import Principal
from backend.auth.rbac import permissions_of
from backend.db.repositories.audit import list_events
from backend.tenants import TenantRegistry

ENTRA_SALES = "6f1c2a3e-0b7d-4a51-9c1e-2f3a4b5c6d7e"  # an Entra ID group object id
REGISTRY_YAML = f"""
platform:
  platform_admin: {{claim: realm_access.roles, any_of: [atrium-operator]}}
tenants:
  - id: sales
    name: Sales
    match: {{claim: groups, any_of: [sales, "{ENTRA_SALES}", /Company/Sales]}}
    roles:
      prompt_editor: {{claim: roles, any_of: [Atrium.PromptEditor]}}
      tenant_admin: {{claim: resource_access.atrium.roles, any_of: [sales-admin]}}
    assistants: [{{name: sales-assistant, title: Sales Assistant}}]
  - id: engineering
    name: Engineering
    match: {{claim: realm_access.roles, any_of: [engineering]}}
    assistants: [{{name: eng-assistant, title: Engineering Assistant}}]
"""


@pytest.fixture
def registry(tmp_path) -> TenantRegistry:
    path = tmp_path / "tenants.yaml"
    path.write_text(REGISTRY_YAML)
    return TenantRegistry.load(path)


@pytest.mark.parametrize(("claims", "tenants", "platform"), [
    # Okta-style: groups as names
    ({"sub": "u1", "groups": ["sales", "Everyone"]}, {"sales": {"member"}}, set()),
    # Entra ID: groups as object ids, app roles in `roles`
    ({"sub": "u2", "groups": [ENTRA_SALES], "roles": ["Atrium.PromptEditor"]},
     {"sales": {"member", "prompt_editor"}}, set()),
    # Keycloak: group paths, realm roles and client roles (nested claims)
    ({"sub": "u3", "groups": ["/Company/Sales"], "realm_access": {"roles": ["engineering", "atrium-operator"]},
      "resource_access": {"atrium": {"roles": ["sales-admin"]}}},
     {"sales": {"member", "tenant_admin"}, "engineering": {"member"}}, {"platform_admin"}),
    # a single group sent as a string
    ({"sub": "u4", "groups": "sales"}, {"sales": {"member"}}, set()),
    # a role without membership grants nothing
    ({"sub": "u5", "roles": ["Atrium.PromptEditor"]}, {}, set()),
    ({"sub": "u6", "realm_access": "engineering"}, {}, set()),  # wrong shape: not a path to a list
])
def test_idp_claim_shapes(registry, claims, tenants, platform):
    principal = claims_to_principal(claims, registry, auth="jwt")
    assert {t: set(r) for t, r in principal.tenants.items()} == tenants
    assert set(principal.platform_roles) == platform


def test_claims_without_subject_are_refused(registry):
    with pytest.raises(ValueError):
        claims_to_principal({"groups": ["sales"]}, registry)


def test_no_access_hint_names_the_groups(registry):
    hint = missing_access_hint(registry)
    assert "sales (Sales)" in hint and "engineering (Engineering)" in hint


def test_role_and_scope_permissions():
    member = Principal(subject="a", name="a", tenants={"sales": frozenset({"member"})})
    editor = Principal(subject="b", name="b", tenants={"sales": frozenset({"member", "prompt_editor"})})
    admin = Principal(subject="c", name="c", tenants={"sales": frozenset({"member", "tenant_admin"})})
    key = Principal(subject="key:1", name="k", tenants={"sales": frozenset({"member"})}, auth="api_key",
                    scopes=frozenset({"retrieval", "prompts:write"}))
    assert permissions_of(member, "sales") == {"chat", "retrieval", "prompts:read"}
    assert permissions_of(editor, "sales") == {"chat", "retrieval", "prompts:read", "prompts:write"}
    assert permissions_of(admin, "sales") == {"chat", "retrieval", "prompts:read", "prompts:write", "ingest",
                                              "admin"}
    assert permissions_of(key, "sales") == {"retrieval", "prompts:write", "prompts:read"}
    assert permissions_of(admin, "finance") == frozenset()


@pytest.mark.parametrize(("env", "enabled"), [
    ({}, True),
    ({"ATRIUM_DEV_LOGIN": "false"}, False),
    ({"OIDC_ISSUER": "https://idp.example"}, False),
    ({"OIDC_ISSUER": "https://idp.example", "ATRIUM_DEV_LOGIN": "true"}, True),
])
def test_password_login_switch(make_settings, env, enabled):
    assert make_settings(**env).password_login_enabled is enabled


def test_me_explains_missing_access(api_client, login_as):
    me = api_client.get("/api/me", cookies=login_as("nobody")).json()
    assert me["tenants"] == {} and "sales (Sales)" in me["no_access"]
    assert "no_access" not in api_client.get("/api/me", cookies=login_as("alice")).json()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_repeated_denials_raise_one_suspicious_access_event_per_window(make_api_client, login_as):
    client = make_api_client(ATRIUM_SUSPICIOUS_DENIALS=3, ATRIUM_SUSPICIOUS_WINDOW_S=300)
    services = client.app.state.services
    erin = login_as("erin")
    caught = _Records()  # the app's logging setup replaces root handlers, so listen on the logger itself
    logging.getLogger("atrium.audit").addHandler(caught)
    try:
        for _ in range(6):
            assert client.get("/api/t/sales/keys", cookies=erin).status_code == 403
    finally:
        logging.getLogger("atrium.audit").removeHandler(caught)
    with services.db.session() as session:
        flagged = [e.model_dump() for e in list_events(session=session, kind="suspicious_access")]
    by = sorted(e["detail"]["by"] for e in flagged)
    assert by == ["ip", "subject"], flagged  # once for erin, once for her IP, not once per denial
    subject_event = next(e for e in flagged if e["detail"]["by"] == "subject")
    assert subject_event["subject"] == "erin" and subject_event["tenant"] == "sales"
    assert [r.getMessage() for r in caught.records] == ["suspicious access: repeated denials"] * 2

    # anonymous probing is caught by IP alone
    for _ in range(3):
        client.get("/api/t/sales/keys", headers={"Authorization": "Bearer atr_x_y"})
    with services.db.session() as session:
        assert len(list_events(session=session, kind="suspicious_access")) == 2  # same IP, same window


def test_denials_below_the_threshold_raise_nothing(make_api_client, login_as):
    client = make_api_client(ATRIUM_SUSPICIOUS_DENIALS=5)
    for _ in range(4):
        client.get("/api/t/sales/keys", cookies=login_as("erin"))
    with client.app.state.services.db.session() as session:
        assert list_events(session=session, kind="suspicious_access") == []
        denials = list_events(session=session, kind="denied")
    # Repeats are counted on one row (per window): four refusals, not four rows.
    assert sum(d.count for d in denials) == 4 and len(denials) <= 2
    assert all(d.ip and d.route == "/api/t/sales/keys" and d.created_at for d in denials)
