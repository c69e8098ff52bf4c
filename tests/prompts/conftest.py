"""The prompt store tests run on every store: the file store, the SQL store on SQLite and on PostgreSQL (skipped
without ATRIUM_TEST_POSTGRES_URL). The SQL stores start seeded from the same copy of prompts/ as the file store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.db.migrate import upgrade

STORES = ["files", "sqlite", "postgres"]


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once, copied for each test: Alembic takes a second or more per upgrade."""
    path = tmp_path_factory.mktemp("migrated-prompts") / "atrium.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_spec(store_kind: str, prompts_root: Path, tmp_path: Path, request: pytest.FixtureRequest,
               _migrated_sqlite: Path) -> tuple[str, str]:
    """What another process needs to open the same store (tests/prompts/replica.open_store): ("files", folder) or
    ("sql", database URL), the database migrated and seeded from prompts_root."""
    if store_kind == "files":
        return ("files", str(prompts_root))
    if store_kind == "sqlite":
        path = tmp_path / "prompts.db"
        shutil.copyfile(_migrated_sqlite, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        upgrade(url)
    from tests.prompts.replica import open_store

    store = open_store(("sql", url))
    from backend.prompts.exchange import seed_database

    assert seed_database(store, prompts_root)
    store.db.engine.dispose()
    return ("sql", url)


@pytest.fixture
def store(store_spec):
    from tests.prompts.replica import open_store

    opened = open_store(store_spec)
    yield opened
    if hasattr(opened, "db"):
        opened.db.engine.dispose()
