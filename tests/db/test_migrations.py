"""Migrations apply on empty SQLite and empty PostgreSQL databases, and are idempotent."""

from __future__ import annotations

import sqlalchemy as sa

from backend.db.migrate import upgrade

EXPECTED = {"chat_turn", "audit_event", "api_key", "alembic_version", "chat_user", "conversation",
            "conversation_step", "conversation_element"}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_apply_on_empty_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert _tables(url) == set()
    upgrade(url)
    assert EXPECTED <= _tables(url)
    upgrade(url)  # a second start finds nothing to do
    assert EXPECTED <= _tables(url)


def test_migrations_apply_on_empty_postgres(postgres_url):
    assert _tables(postgres_url) == set()
    upgrade(postgres_url)
    assert EXPECTED <= _tables(postgres_url)
    upgrade(postgres_url)
    assert EXPECTED <= _tables(postgres_url)


def test_app_runs_on_postgres(postgres_url, make_api_client, login_as):
    # One pod (ATRIUM_SINGLE_NODE): embedded vectors and in-process quotas are allowed with PostgreSQL.
    client = make_api_client(DATABASE_URL=postgres_url, ATRIUM_SINGLE_NODE="true", CHAINLIT_AUTH_SECRET="s" * 48,
                             VECTOR_STORE="sqlite")  # this server has no pgvector
    assert client.get("/readyz").status_code == 200
    r = client.get("/api/me", cookies=login_as("alice"))
    assert r.status_code == 200 and r.json()["tenants"] == {"sales": ["member"]}
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        denied = conn.execute(sa.text("select count(*) from audit_event")).scalar()
    engine.dispose()
    assert denied == 0
    client.get("/api/me")  # unauthenticated -> 401 + audit row in PostgreSQL
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("select kind, status from audit_event")).one()
    engine.dispose()
    assert tuple(row) == ("denied", 401)
