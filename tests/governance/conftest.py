from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from backend.governance.quotas import QuotaService

# Every tenant-level limit off: a test turns on only the ones it is about.
OPEN = {"requests_per_minute": None, "user_requests_per_minute": None, "tokens_per_day": None,
        "monthly_budget_usd": None}


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


@pytest.fixture
def db(tmp_path):
    """A migrated SQLite database of the test's own (the quotas' source of truth)."""
    from backend.db.engine import Database, make_engine
    from backend.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    return Database(make_engine(url))


def quota_services(tmp_path, db, make_limits, n: int = 1, sales: dict | None = None, *,  # noqa: ANN001 - fixtures
                   allowance_cache_s: float = 0.0, **quotas) -> list[QuotaService]:
    """`n` services on the same counters and database (as `n` replicas); `quotas`: every tenant's (OPEN otherwise),
    `sales`: quotas of Sales alone; `allowance_cache_s`: how long each keeps members' raised allowances."""
    from backend.governance.quotas import QuotaService
    from backend.tenants import TenantRegistry
    from tests.llm.fakes import make_config_dir, set_tenant

    factory, prefix = make_limits
    cfg = make_config_dir(tmp_path, model_list=[], quotas={**OPEN, **quotas})
    set_tenant(cfg, "sales", quotas=sales)
    registry = TenantRegistry.load(cfg / "tenants.yaml")
    return [QuotaService(backend=factory(), registry=registry, db=db, prefix=prefix,
                         allowance_cache_s=allowance_cache_s) for _ in range(n)]


from tests.llm.conftest import mock_models, model_services  # noqa: E402,F401 - shared fixtures
