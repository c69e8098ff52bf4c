"""Liveness and readiness, including a readiness failure that names the broken part."""

from __future__ import annotations

import shutil

import sqlalchemy as sa


def test_healthz_and_readyz_ok(api_client):
    assert api_client.get("/healthz").json() == {"status": "ok"}
    r = api_client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["parts"]["database"] == "ok"
    assert "local" in body["models"]
    assert body["prompt_problems"] == {}


def test_readyz_lists_assistants_without_a_prompt_and_stays_ready(make_api_client, prompts_root):
    """One department's missing prompt must not take every department's replicas out of service."""
    shutil.rmtree(prompts_root / "sales" / "deal-desk")
    labels = prompts_root / "engineering" / "eng-assistant" / "labels.yaml"
    labels.write_text(labels.read_text().replace("production: 1", "production: 3"))
    client = make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root))
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and "failing" not in r.json()
    problems = r.json()["prompt_problems"]
    assert sorted(problems) == ["engineering/eng-assistant", "sales/deal-desk"]
    assert problems["sales/deal-desk"].startswith(f"{prompts_root / 'sales' / 'deal-desk'} does not exist")
    assert problems["engineering/eng-assistant"].startswith(f"{labels} points `production` at version 3")
    labels.write_text(labels.read_text().replace("production: 3", "production: 1"))  # fixed: read at each call
    assert list(client.get("/readyz").json()["prompt_problems"]) == ["sales/deal-desk"]


def test_readyz_503_names_the_database_when_sqlite_is_gone(api_client, data_dir):
    services = api_client.app.state.services
    services.db.engine.dispose()
    db_file = data_dir / "atrium.db"
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"atrium.db{suffix}").unlink(missing_ok=True)
    db_file.mkdir()  # a directory where the database file should be: SQLite cannot open it
    try:
        r = api_client.get("/readyz")
    finally:
        shutil.rmtree(db_file)
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["database"]
    assert body["parts"]["database"] != "ok" and body["parts"]["models"] == "ok"


def test_readyz_503_when_postgres_database_disappears(postgres_url, make_api_client):
    client = make_api_client(DATABASE_URL=postgres_url)
    assert client.get("/readyz").status_code == 200
    admin_url = postgres_url.rsplit("/", 1)[0] + "/postgres"
    name = postgres_url.rsplit("/", 1)[1]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "database" in r.json()["failing"]


def test_root_redirects_to_chat(api_client):
    r = api_client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/chat"
