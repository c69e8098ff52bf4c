from __future__ import annotations

import os
import uuid

import pytest


def _redis_url() -> str:
    return os.environ.get("ATRIUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url() -> str:
    import redis

    url = _redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis at {url} does not answer ({exc}); set ATRIUM_TEST_REDIS_URL")
    return url


@pytest.fixture
def redis_prefix(redis_url):
    """A unique key prefix per test; its keys are deleted afterwards."""
    import redis

    prefix = f"atrium-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def backend_kind(request) -> str:
    return request.param


@pytest.fixture
def make_limits(request, backend_kind):
    """-> (backend factory, key prefix). Each call of the factory is a new client (as another replica)."""
    if backend_kind == "memory":
        from backend.governance.ratelimit import MemoryLimits

        shared = MemoryLimits()
        return (lambda: shared), f"atrium-test-{uuid.uuid4().hex[:10]}"
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    from backend.governance.ratelimit import RedisLimits

    return (lambda: RedisLimits(url)), prefix


from tests.llm.conftest import mock_models, model_services  # noqa: E402,F401 - shared fixtures
