"""Shared fixtures: settings override, temp data dir, in-process app, a served app, demo logins."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import pytest

from tests.file_order import pytest_collection_modifyitems  # noqa: F401 - a hook: the order xdist hands files out in

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO = Path(__file__).resolve().parent.parent
DEMO_PASSWORD = "atrium"
# Demo users (config/demo_users.yaml): user -> groups claim
DEMO_USERS = {
    "alice": ["sales"],
    "bob": ["sales", "sales-editors"],
    "carol": ["sales", "sales-admins"],
    "dave": ["engineering", "engineering-editors"],
    "erin": ["engineering"],
    "ellen": ["engineering", "engineering-admins"],
    "fiona": ["finance", "finance-admins"],
    "frank": ["finance", "finance-editors"],
    "maria": ["sales", "finance"],
    "root": ["atrium-admins"],
    "nobody": [],
}

# Provider keys from the developer's shell must not change which tiers are live in tests.
_SCRUB = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "DATABASE_URL", "REDIS_URL", "OIDC_ISSUER",
          "ATRIUM_MODEL_FAST", "ATRIUM_MODEL_SMART", "ATRIUM_MODEL_LOCAL", "VECTOR_STORE", "ATRIUM_DEV_LOGIN",
          "ATRIUM_METRICS_TOKEN", "ATRIUM_LITELLM_CALLBACKS", "OTEL_EXPORTER_OTLP_ENDPOINT",
          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


# The day model retirements are judged on (LiteLLM's model table), for in-process services: tests that use a
# model with a retirement date (gpt-4.1 retires 2027-01-14) keep passing after it. Servers started as
# processes use the real date, and only models without one.
TEST_TODAY = date(2026, 12, 1)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SCRUB:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("backend.llm.router.utc_today", lambda: TEST_TODAY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def prompts_root(tmp_path: Path) -> Path:
    """A copy of the repo's prompts/ (tests never modify the real files): pass it as ATRIUM_PROMPTS_DIR."""
    import shutil

    root = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", root)
    return root


@pytest.fixture
def make_settings(data_dir: Path) -> Callable[..., object]:
    """Settings for a temp data dir; keyword overrides use the env names, e.g. VECTOR_STORE="pinecone"."""
    from backend.settings import Settings

    def make(**env: object):
        values = {"ATRIUM_DATA_DIR": str(data_dir), **env}
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def services(settings):
    from backend.container import build_services, set_services

    svc = build_services(settings)
    set_services(svc)
    yield svc
    svc.close()
    set_services(None)


@pytest.fixture
def make_api_client(make_settings):
    """In-process app without Chainlit (see create_app): make_api_client(**env) -> TestClient."""
    from fastapi.testclient import TestClient

    from app import create_app
    from backend.container import set_services

    clients: list[TestClient] = []

    def make(**env: object) -> TestClient:
        client = TestClient(create_app(make_settings(**env), mount_chat=False))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    set_services(None)


@pytest.fixture
def api_client(make_api_client):
    return make_api_client()


@pytest.fixture
def api_services(api_client):
    return api_client.app.state.services


def session_cookie_for(user: str) -> dict[str, str]:
    """A Chainlit session cookie for a demo user, signed like the app signs it (in-process apps only)."""
    import yaml

    from backend.auth.demo_users import DemoUser

    users = yaml.safe_load((REPO / "config" / "demo_users.yaml").read_text())["users"]
    claims = DemoUser.model_validate(next(u for u in users if u["username"] == user)).full_claims()  # as at login
    return {"access_token": session_token(user, claims, provider="password")}


def session_token(identifier: str, claims: dict, *, provider: str | None = None, signed_in_at: float | None = None,
                  sid: str | None = None) -> str:
    """A session token as a sign-in makes it: the claims, and the session's marks (`sid`, `signed_in_at`, now by
    default). Not logged in the session registry: a sid without a row is valid until it is signed out or its
    subject's sessions are ended (backend/auth/sessions.py)."""
    import uuid

    from chainlit.auth.jwt import create_jwt
    from chainlit.user import User

    metadata: dict = {"claims": claims, "sid": sid or uuid.uuid4().hex,
                      "signed_in_at": time.time() if signed_in_at is None else signed_in_at}
    if provider is not None:
        metadata["provider"] = provider
    return create_jwt(User(identifier=identifier, display_name=claims.get("name"), metadata=metadata))


AUTH_SECRET = "test-secret-" + "x" * 40  # what login_as signs session cookies with (CHAINLIT_AUTH_SECRET)


@pytest.fixture
def login_as(api_client, monkeypatch):
    """login_as("alice") -> cookies for the in-process api_client."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", AUTH_SECRET)

    def make(user: str) -> dict[str, str]:
        return session_cookie_for(user)

    return make


# -- a served app (subprocess) ------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    _cookies: dict[str, dict[str, str]] = field(default_factory=dict)

    def login(self, user: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
        """Log in over HTTP (Chainlit's /chat/login) and return the session cookies (remembered while they work: a
        test that signs out ends the session on the server, and the next login gets a new one)."""
        cached = self._cookies.get(user)
        if cached is not None and httpx.get(f"{self.url}/api/me", cookies=cached, timeout=30).status_code == 401:
            del self._cookies[user]
        if user not in self._cookies:
            r = httpx.post(f"{self.url}/chat/login", data={"username": user, "password": password}, timeout=30)
            r.raise_for_status()
            self._cookies[user] = dict(r.cookies)
        return self._cookies[user]

    def rows(self, sql: str, **params: object) -> list[dict]:
        """Rows of a query on the served app's SQLite database (what the app recorded)."""
        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{self.data_dir / 'atrium.db'}")
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(sa.text(sql), params).mappings().all()]
        finally:
            engine.dispose()

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def start_server(tmp: Path, extra_env: dict[str, str] | None = None, *, timeout: float = 120,
                 port: int | None = None) -> LiveServer:
    """`port`: when the URL must be known before the app starts (e.g. an IdP's registered redirect URI)."""
    port = port or free_port()
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update({"ATRIUM_DATA_DIR": str(data), "ATRIUM_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "ATRIUM_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    env.update(extra_env or {})
    log_path = tmp / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return LiveServer(url=url, data_dir=data, env=env, process=proc, log_path=log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not start in {timeout}s:\n{log_path.read_text()[-4000:]}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


def replica_env(*, config_dir: Path, database_url: str, redis_url: str, redis_prefix: str,
                **extra: str) -> dict[str, str]:
    """What every replica of one deployment shares (the README's "several replicas" recipe): one config, one
    database, one Redis under one key prefix; the replicas leave documents to the workers."""
    return {"ATRIUM_CONFIG_DIR": str(config_dir), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "ATRIUM_REDIS_PREFIX": redis_prefix, "ATRIUM_INGEST_WORKER": "false", **extra}


@contextmanager
def served_replicas(tmp: Path, env: dict[str, str], count: int = 2) -> Iterator[list[LiveServer]]:
    """`count` served replicas with `env` (replica_env), each with a data dir of its own; stopped on exit."""
    servers: list[LiveServer] = []
    try:
        for i in range(count):
            servers.append(start_server(tmp / f"r{i}", env))
        yield servers
    finally:
        for server in servers:
            stop_server(server)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """One served app for the session (SQLite, embedded store, local model)."""
    server = start_server(tmp_path_factory.mktemp("live"))
    yield server
    stop_server(server)


# -- PostgreSQL and Redis (the machine's servers; scripts/test.sh exports their URLs when they answer) ----


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin_url = os.environ.get("ATRIUM_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("PostgreSQL not available: set ATRIUM_TEST_POSTGRES_URL "
                    "(make test does when 127.0.0.1:5432 answers)")
    import uuid

    import sqlalchemy as sa

    name = f"atrium_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url(worker_id: str) -> Iterator[str]:
    """The test Redis database, flushed before and after (one database per pytest-xdist worker: 15, 14, ...)."""
    url = os.environ.get("ATRIUM_TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis not available: set ATRIUM_TEST_REDIS_URL (make test does when 127.0.0.1:6379 answers)")
    import redis

    if worker_id.startswith("gw"):
        base, _, db = url.rpartition("/")
        url = f"{base}/{max(0, int(db or 15) - int(worker_id[2:]))}"

    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# -- PostgreSQL with pgvector: pgserver (PyPI: PostgreSQL 16.2 + pgvector 0.6.2), started by the tests -------------


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The admin URL of one PostgreSQL-with-pgvector server for the whole run, shared by its pytest-xdist workers.

    Sharing uses pgserver's own machinery: every worker calls get_server() on the same data directory (named after
    the run's base temp dir), pgserver's inter-process lock lets one of them initdb and start it, its handle list
    counts the workers, and the last one to finish stops the server and deletes the directory. The directory is
    outside /tmp/pytest-of-<user>: run as root, pgserver runs PostgreSQL as its own `pgserver` system user (it
    creates it and opens the path's folders to it), and every pytest start closes that folder to its owner again.
    Listens on a Unix socket in the data directory only (no TCP port)."""
    import hashlib
    import tempfile
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on this machine
            import pgserver
    except ImportError:
        pytest.skip("pgserver is not installed: .venv/bin/pip install -c constraints.txt pgserver==0.1.4")
    base = tmp_path_factory.getbasetemp()
    run_dir = base.parent if base.name.startswith("popen-gw") else base
    key = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
    pgdata = Path(tempfile.gettempdir()) / f"atrium-pgvector-{key}"
    pgdata.mkdir(exist_ok=True)  # here, not in get_server: two workers creating it at once would collide
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="delete")
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported as the skip reason
        pytest.skip(f"pgserver could not start PostgreSQL with pgvector in {pgdata}: {type(exc).__name__}: {exc}")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()  # stops and deletes only when this was the last worker using it


@pytest.fixture
def pgvector_url(pgvector_server: str) -> Iterator[str]:
    """A fresh, empty database on the pgvector server for one test (no extension created yet), dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = f"atrium_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pgvector_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield pgvector_server.replace("/postgres?", f"/{name}?", 1)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
