"""The verified-key cache: only successes are remembered, for ttl seconds; revocation through the API forgets
at once; ttl 0 turns it off; it stays bounded."""

from __future__ import annotations

import pytest

from backend.auth import api_keys
from backend.auth.api_keys import InvalidApiKey, KeyCache, issue_key, verify_key
from backend.db.repositories.api_keys import revoke_api_key


@pytest.fixture
def db(services):
    return services.db


def test_success_is_remembered_until_the_ttl(db):
    now = [0.0]
    cache = KeyCache(ttl_s=5, clock=lambda: now[0])
    token = issue_key(db=db, tenant="sales", scopes=["chat"]).token
    key = cache.verify(db=db, token=token)
    assert (key.tenant, key.scopes) == ("sales", frozenset({"chat"}))
    assert cache.get(token) == key
    with db.session() as session:
        revoke_api_key(session=session, tenant="sales", key_id=key.id)
    assert cache.verify(db=db, token=token) == key  # within the ttl: not asked again
    now[0] = 5.0
    assert cache.get(token) is None
    with pytest.raises(InvalidApiKey, match="revoked_api_key"):
        cache.verify(db=db, token=token)


def test_failures_are_never_cached_and_forget_drops_a_key(db):
    cache = KeyCache(ttl_s=60)
    token = issue_key(db=db, tenant="sales", scopes=["chat"]).token
    wrong = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    for _ in range(2):
        with pytest.raises(InvalidApiKey, match="unknown_api_key"):
            cache.verify(db=db, token=wrong)
        assert cache.get(wrong) is None
    key = cache.verify(db=db, token=token)
    cache.forget(key.id)
    assert cache.get(token) is None


def test_ttl_zero_turns_the_cache_off(db):
    cache = KeyCache(ttl_s=0)
    token = issue_key(db=db, tenant="sales", scopes=["chat"]).token
    cache.verify(db=db, token=token)
    assert cache.get(token) is None
    assert verify_key(db=db, token=token).tenant == "sales"


def test_the_cache_stays_bounded(db, monkeypatch):
    monkeypatch.setattr(api_keys, "CACHE_MAX_KEYS", 3)
    cache = KeyCache(ttl_s=60)
    tokens = [issue_key(db=db, tenant="sales", scopes=["chat"]).token for _ in range(4)]
    for t in tokens:
        cache.verify(db=db, token=t)
    assert len(cache._entries) <= 3 and cache.get(tokens[-1]) is not None
