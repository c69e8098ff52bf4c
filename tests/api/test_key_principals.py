"""The API-key principal remembered per cached key (backend/api/deps.py): the same key object and registry give
the same principal; a key verified again (a new object: after a revocation or its cache time) or another registry
builds a new one, equal to what is built without the memo."""

from __future__ import annotations

from dataclasses import replace

from backend.api.deps import _cached_principal_of_key, _principal_of_key
from backend.auth.api_keys import VerifiedKey
from backend.tenants import TenantConfig, TenantRegistry


def _registry() -> TenantRegistry:
    return TenantRegistry([TenantConfig.model_validate({"id": "sales", "name": "Sales", "match": {"any_of": ["sales"]},
                                                        "assistants": [{"name": "a", "title": "A"}]})])


def test_a_cached_keys_principal_is_built_once_per_key_object_and_registry():
    registry, key = _registry(), VerifiedKey(id="k1", tenant="sales", name="", scopes=frozenset({"chat"}))
    first = _cached_principal_of_key(key, registry)
    assert first == _principal_of_key(key, registry) and _cached_principal_of_key(key, registry) is first
    narrower = replace(key, scopes=frozenset({"retrieval"}))  # verified again, with what the database says now
    assert _cached_principal_of_key(narrower, registry).scopes == frozenset({"retrieval"})
    other = _registry()
    again = _cached_principal_of_key(key, other)
    assert again is not first and again == _principal_of_key(key, other)
