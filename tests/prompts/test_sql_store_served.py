"""The studio's API on the SQL store: a served app (`atrium serve`, a real process) on PostgreSQL keeps its prompt
versions in the database (seeded from ATRIUM_PROMPTS_DIR at start, the folder never written), and a second save on
the same base is the same 409 as with files."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from backend.settings import Settings
from tests.conftest import start_server, stop_server

SA = "/api/t/sales/prompts/sales-assistant"


def digest(root) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())).hexdigest()


@pytest.mark.parametrize("env,kind", [
    ({}, "files"),
    ({"DATABASE_URL": "postgresql://u@h/db"}, "database"),
    ({"DATABASE_URL": "postgres://u@h/db"}, "database"),
    ({"DATABASE_URL": "sqlite:////tmp/x.db"}, "files"),
    ({"ATRIUM_PROMPT_STORE": "database"}, "database"),
    ({"DATABASE_URL": "postgresql://u@h/db", "ATRIUM_PROMPT_STORE": "files"}, "files"),
])
def test_which_store(env, kind, tmp_path):
    assert Settings(ATRIUM_DATA_DIR=str(tmp_path), **env).prompt_store_kind == kind


def test_a_served_app_on_postgres_saves_versions_in_the_database_and_409s_a_stale_base(postgres_url, prompts_root,
                                                                                        tmp_path):
    before = digest(prompts_root)
    server = start_server(tmp_path, {"DATABASE_URL": postgres_url, "ATRIUM_PROMPTS_DIR": str(prompts_root),
                                     "ATRIUM_SINGLE_NODE": "true", "ATRIUM_INGEST_WORKER": "false",
                                     "CHAINLIT_AUTH_SECRET": "served-sql-prompts-" + "s" * 40})
    try:
        bob = server.login("bob")
        v1 = httpx.get(f"{server.url}{SA}/versions/1", cookies=bob, timeout=30).json()

        def save(tag: str) -> httpx.Response:
            return httpx.post(f"{server.url}{SA}/versions", cookies=bob, timeout=60, json={
                "body": v1["body"] + f"\n{tag}\n", "config": v1["config"], "message": tag, "base_version": 1})

        first, second = save("first"), save("second")
        assert first.status_code == 201, first.text
        assert first.json()["version"] == 2
        assert second.status_code == 409, second.text
        assert second.json()["error"] == "version_conflict" and second.json()["latest_version"] == 2
        moved = httpx.put(f"{server.url}{SA}/labels/staging", cookies=bob, json={"version": 2}, timeout=30)
        assert moved.status_code == 200, moved.text
        assert moved.json()["history"][0] | {"at": None} == {"who": "bob", "label": "staging", "from": 1, "to": 2,
                                                             "at": None}
        detail = httpx.get(f"{server.url}{SA}", cookies=bob, timeout=30).json()
        assert [v["version"] for v in detail["versions"]] == [2, 1]
        assert detail["labels"] == {"production": 1, "staging": 2}
    finally:
        stop_server(server)
    assert digest(prompts_root) == before, "the prompts folder only seeded the database"
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        saved = conn.execute(sa.text("select version, author from prompt_version where tenant = 'sales' and "
                                     "assistant = 'sales-assistant' order by version")).all()
    engine.dispose()
    assert [tuple(r) for r in saved] == [(1, "atrium-seed"), (2, "bob")]
