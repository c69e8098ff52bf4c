"""The repository tests run each test on both engines: a migrated SQLite file and a migrated, empty PostgreSQL
database (skipped without ATRIUM_TEST_POSTGRES_URL)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once, copied for each test: Alembic takes a second or more per upgrade."""
    path = tmp_path_factory.mktemp("migrated") / "atrium.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, _migrated_sqlite: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "atrium.db"
        shutil.copyfile(_migrated_sqlite, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        upgrade(url)
    engine = make_engine(url)
    try:
        yield Database(engine)
    finally:
        engine.dispose()
