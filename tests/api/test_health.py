"""Liveness and readiness, including a readiness failure that names the broken part."""

from __future__ import annotations

import shutil

import sqlalchemy as sa

from tests.conftest import session_cookie_for


def _operator() -> dict[str, str]:
    """/readyz's details are for platform admins (root is one); anyone else gets the status alone."""
    return session_cookie_for("root")


def test_healthz_and_readyz_ok(api_client):
    body = api_client.get("/healthz").json()
    # Which process answered: every group is served (null), and an id made once per process.
    assert body["status"] == "ok" and body["deployment_groups"] is None
    assert isinstance(body["instance"], str) and len(body["instance"]) >= 8
    r = api_client.get("/readyz", cookies=_operator())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["parts"]["database"] == "ok"
    assert "local" in body["models"]
    assert body["prompt_problems"] == {}


def test_readyz_tells_anyone_only_whether_it_is_ready(make_api_client, prompts_root, monkeypatch):
    """Finding 12: an anonymous /readyz named missing provider keys and prompt problems with absolute paths.
    Now the status alone, to anyone (a probe, a member, an API key); the details to platform admins; and a probe
    is not a refusal, so nothing is audited for it."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    shutil.rmtree(prompts_root / "sales" / "deal-desk")
    client = make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root))
    services = client.app.state.services
    from backend.auth.api_keys import issue_key
    from backend.db.repositories.audit import list_events

    key = issue_key(db=services.db, tenant="sales", scopes=["admin"]).token
    for credentials in ({}, {"cookies": session_cookie_for("carol")}, {"headers": {"Authorization": f"Bearer {key}"}}):
        r = client.get("/readyz", **credentials)
        assert (r.status_code, r.json()) == (200, {"status": "ok"}), credentials
        assert str(prompts_root) not in r.text and "API_KEY" not in r.text
    with services.db.session() as session:
        assert list_events(session=session, kind="denied") == []
    details = client.get("/readyz", cookies=_operator()).json()
    assert list(details["prompt_problems"]) == ["sales/deal-desk"] and "models_excluded" in details


def test_readyz_lists_assistants_without_a_prompt_and_stays_ready(make_api_client, prompts_root):
    """One department's missing prompt must not take every department's replicas out of service."""
    shutil.rmtree(prompts_root / "sales" / "deal-desk")
    labels = prompts_root / "engineering" / "eng-assistant" / "labels.yaml"
    labels.write_text(labels.read_text().replace("production: 1", "production: 3"))
    client = make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root))
    r = client.get("/readyz", cookies=_operator())
    assert r.status_code == 200 and r.json()["status"] == "ok" and "failing" not in r.json()
    problems = r.json()["prompt_problems"]
    assert sorted(problems) == ["engineering/eng-assistant", "sales/deal-desk"]
    assert problems["sales/deal-desk"].startswith(f"{prompts_root / 'sales' / 'deal-desk'} does not exist")
    assert problems["engineering/eng-assistant"].startswith(f"{labels} points `production` at version 3")
    labels.write_text(labels.read_text().replace("production: 3", "production: 1"))  # fixed: read at each call
    assert list(client.get("/readyz", cookies=_operator()).json()["prompt_problems"]) == ["sales/deal-desk"]


def test_readyz_503_names_the_database_when_sqlite_is_gone(api_client, data_dir, caplog):
    services = api_client.app.state.services
    services.db.engine.dispose()
    db_file = data_dir / "atrium.db"
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"atrium.db{suffix}").unlink(missing_ok=True)
    db_file.mkdir()  # a directory where the database file should be: SQLite cannot open it
    try:
        r = api_client.get("/readyz", cookies=_operator())
    finally:
        shutil.rmtree(db_file)
    # A session cannot be verified without the database (its revocation is checked there): the status alone,
    # and the log names the failing part.
    assert (r.status_code, r.json()) == (503, {"status": "unavailable"})
    logged = [rec for rec in caplog.records if rec.getMessage() == "not ready"]
    assert logged and list(logged[-1].failing) == ["database"]


def test_readyz_503_when_postgres_database_disappears(postgres_url, make_api_client):
    client = make_api_client(DATABASE_URL=postgres_url, ATRIUM_SINGLE_NODE="true", CHAINLIT_AUTH_SECRET="s" * 48,
                             VECTOR_STORE="sqlite")  # this server has no pgvector
    assert client.get("/readyz").status_code == 200
    admin_url = postgres_url.rsplit("/", 1)[0] + "/postgres"
    name = postgres_url.rsplit("/", 1)[1]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
    r = client.get("/readyz")
    assert (r.status_code, r.json()) == (503, {"status": "unavailable"})  # what fails: in the log, and for admins


def test_root_redirects_to_chat(api_client):
    r = api_client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/chat"


def test_healthz_names_the_served_groups_and_the_instance(make_api_client):
    """Behind a proxy, a test (or an operator) tells which process and group answered."""
    client = make_api_client(ATRIUM_DEPLOYMENT_GROUPS="regulated,default", ATRIUM_INSTANCE_ID="web-regulated-0")
    assert client.get("/healthz").json() == {"status": "ok", "deployment_groups": ["default", "regulated"],
                                             "instance": "web-regulated-0"}
