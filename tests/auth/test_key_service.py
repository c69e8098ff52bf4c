"""KeyService (auth/key_service.py) and SessionRegistry.end without HTTP: each change is recorded by the service that
makes it (once per key, nothing for a refused or repeated call), and what they hand out is plain data."""

from __future__ import annotations

import pytest

from backend.auth.api_keys import InvalidApiKey, KeyInfo
from backend.auth.principal import Principal
from backend.db.models import ApiKey
from backend.db.repositories.audit import list_events
from backend.errors import NotFound


def events(services, kind: str) -> list:
    with services.db.session() as session:
        return list(reversed(list_events(session=session, kind=kind, limit=100)))


CAROL = Principal(subject="carol", name="Carol", tenants={"sales": frozenset({"member", "tenant_admin"})})


def key_caller(key_id: str, owner: str) -> Principal:
    return Principal(subject=f"key:{key_id}", name="k", tenants={"sales": frozenset({"member", "tenant_admin"})},
                     auth="api_key", scopes=frozenset({"admin"}), key_id=key_id, acting_for=owner)


def test_create_records_the_key_and_hands_out_plain_data(services):
    issued = services.keys.create(CAROL, "sales", scopes=["chat"], name="ci", expires_in_days=3, route="/k",
                                  ip="10.1.1.1")
    assert isinstance(issued.key, KeyInfo) and not isinstance(issued.key, ApiKey)
    assert issued.token.startswith(f"atr_{issued.key.id}_")
    [created] = events(services, "key_created")
    assert (created.subject, created.tenant, created.route, created.ip, created.status) == \
        ("carol", "sales", "/k", "10.1.1.1", 201)
    assert created.detail["key_id"] == issued.key.id and created.detail["owner"] == "carol"
    assert created.detail["parent_key_id"] is None and created.detail["expires_at"]
    child = services.keys.create(key_caller(issued.key.id, "carol"), "sales", scopes=["chat"], name="",
                                 expires_in_days=None, route="/k", ip=None)
    assert child.key.parent_key_id == issued.key.id and child.key.owner == "carol"
    assert [r.key.id for r in services.keys.review("sales")] == [child.key.id, issued.key.id]


def test_a_key_made_with_a_revoked_key_is_refused_and_not_recorded(services):
    parent = services.keys.create(CAROL, "sales", scopes=["admin"], name="", expires_in_days=None, route="/k",
                                  ip=None)
    services.keys.revoke(CAROL, "sales", parent.key.id, route="/k", ip=None)
    with pytest.raises(InvalidApiKey):
        services.keys.create(key_caller(parent.key.id, "carol"), "sales", scopes=["chat"], name="",
                             expires_in_days=None, route="/k", ip=None)
    assert len(events(services, "key_created")) == 1


def test_revoking_records_each_key_once(services):
    parent = services.keys.create(CAROL, "sales", scopes=["admin"], name="", expires_in_days=None, route="/k",
                                  ip=None)
    child = services.keys.create(key_caller(parent.key.id, "carol"), "sales", scopes=["chat"], name="",
                                 expires_in_days=None, route="/k", ip=None)
    assert services.keys.revoke(CAROL, "finance", parent.key.id, route="/k", ip=None) is None  # not finance's
    revoked = services.keys.revoke(CAROL, "sales", parent.key.id, route="/d", ip="10.2.2.2")
    assert revoked.revoked_now and revoked.descendants_revoked == [child.key.id]
    assert isinstance(revoked.key, KeyInfo) and revoked.key.revoked_at is not None
    again = services.keys.revoke(CAROL, "sales", parent.key.id, route="/d", ip=None)
    assert not again.revoked_now and again.descendants_revoked == []
    assert [(e.detail, e.ip) for e in events(services, "key_revoked")] == \
        [({"key_id": parent.key.id}, "10.2.2.2"), ({"key_id": child.key.id, "via": parent.key.id}, "10.2.2.2")]


def test_ending_sessions_is_recorded_refused_or_not(services):
    services.conversations.remember_user(identifier="alice", display_name="Alice", provider="password",
                                         claims={"iss": "https://idp.example", "sub": "alice", "groups": ["sales"]})
    with pytest.raises(NotFound):
        services.sessions.end(subject="alice", by="fiona", tenant="finance", route="/e", ip="10.3.3.3")
    ended = services.sessions.end(subject="alice", by="carol", tenant="sales", route="/e", ip="10.3.3.3")
    [denied] = events(services, "denied")
    assert (denied.subject, denied.tenant, denied.status, denied.reason, denied.detail) == \
        ("fiona", "finance", 404, "unknown_subject", {"target": "alice"})
    [done] = events(services, "sessions_ended")
    assert (done.subject, done.tenant, done.route, done.ip, done.detail) == \
        ("carol", "sales", "/e", "10.3.3.3", {"target": "alice", "ended": ended.ended})
