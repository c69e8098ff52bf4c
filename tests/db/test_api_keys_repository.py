"""backend/db/repositories/api_keys.py: tenant B never lists, follows or revokes tenant A's keys, not even a key
of A that claims a parent in B."""

from __future__ import annotations

import pytest

from backend.db.models import ApiKey
from backend.db.repositories import api_keys as repo
from tests.db.tenancy import A, B, assert_all_covered, rows_of

UNSCOPED = {
    "get_api_key": "by id: the authenticator looks a presented key up, then acts only in the key's own tenant",
}


def _key(tenant: str, name: str, parent: str | None = None) -> ApiKey:
    return ApiKey(id=f"{tenant}-{name}", tenant=tenant, name=name, key_hash=f"hash-{tenant}-{name}",
                  scopes=["chat"], owner="carol", parent_key_id=parent)


@pytest.fixture
def seeded(db):
    """Each tenant: a root key and a key made through it. A's `stray` key names B's root as its parent."""
    with db.session() as s:
        for tenant in (A, B):
            repo.create_api_key(session=s, key=_key(tenant, "root"))
            repo.create_api_key(session=s, key=_key(tenant, "child", parent=f"{tenant}-root"))
        repo.create_api_key(session=s, key=_key(A, "stray", parent=f"{B}-root"))
    return db


def test_every_function_is_tested_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_create_api_key(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.create_api_key(session=s, key=_key(B, "other"))
    assert rows_of(seeded, A) == before


def test_get_api_key(seeded):
    with seeded.session() as s:
        assert repo.get_api_key(session=s, key_id=f"{A}-root").tenant == A  # the caller checks the tenant


def test_list_api_keys(seeded):
    with seeded.session() as s:
        assert {k.id for k in repo.list_api_keys(session=s, tenant=B)} == {f"{B}-root", f"{B}-child"}


def test_descendant_ids(seeded):
    with seeded.session() as s:
        assert repo.descendant_ids(session=s, tenant=B, key_id=f"{B}-root") == [f"{B}-child"]  # not A's stray
        assert repo.descendant_ids(session=s, tenant=B, key_id=f"{A}-root") == []


def test_revoke_api_key(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.revoke_api_key(session=s, tenant=B, key_id=f"{A}-root") is None
        revoked = repo.revoke_api_key(session=s, tenant=B, key_id=f"{B}-root")
    assert revoked is not None and revoked.lineage == [f"{B}-root", f"{B}-child"]
    assert rows_of(seeded, A) == before  # A's stray key, "made through" B's root, is not revoked by B


def test_key_owners(seeded):
    with seeded.session() as s:
        owners = repo.key_owners(session=s, tenant=B)
    assert owners == {f"key:{B}-root": "carol", f"key:{B}-child": "carol"}  # none of A's, not A's stray


def test_charged_subjects(seeded):
    with seeded.session() as s:
        charged = repo.charged_subjects(session=s, tenant=B, member="carol")
    assert sorted(charged) == sorted(["carol", f"key:{B}-root", f"key:{B}-child"])  # carol's keys in A do not count
