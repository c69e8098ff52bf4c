"""backend/startup_checks.py: on PostgreSQL, the embedded vector store, no REDIS_URL and no CHAINLIT_AUTH_SECRET
each stop `atrium serve` (and the first `atrium worker`) with one `error:` line naming the fix, exit code 2;
ATRIUM_SINGLE_NODE=true lets the first two through."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backend.startup_checks import problems
from tests.conftest import _SCRUB, REPO, free_port

# Never reached: the checks run before anything connects (and where they pass, the connection error shows it).
PG = "postgresql://atrium@127.0.0.1:1/atrium"
SECRET = "s" * 48
SHARED_STORE = {"VECTOR_STORE": "pinecone", "PINECONE_API_KEY": "pk", "PINECONE_INDEX_HOST": "https://127.0.0.1:1"}


@pytest.fixture(autouse=True)
def _no_session_secret(monkeypatch):
    """An in-process app built by an earlier test exports CHAINLIT_AUTH_SECRET (app._configure_chainlit)."""
    monkeypatch.delenv("CHAINLIT_AUTH_SECRET", raising=False)


def _run(tmp_path, command: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update(ATRIUM_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=PG, PYTHONPATH=str(REPO), **env)
    args = ["serve", "--port", str(free_port())] if command == "serve" else [command]
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=tmp_path, env=full, capture_output=True,
                          text=True, timeout=180)


def _errors(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Atrium: open" not in done.stdout
    lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("{")]
    assert all(ln.startswith("error: ") for ln in lines), lines
    return lines


def test_postgres_with_the_embedded_vector_store_stops_serve(tmp_path):
    [line] = _errors(_run(tmp_path, "serve", VECTOR_STORE="sqlite", REDIS_URL="redis://127.0.0.1:1/0",
                          CHAINLIT_AUTH_SECRET=SECRET))
    assert "VECTOR_STORE=sqlite keeps the vectors in each pod's own file" in line
    assert "set VECTOR_STORE to a shared store (pgvector or pinecone), or ATRIUM_SINGLE_NODE=true" in line


def test_postgres_with_the_embedded_vector_store_stops_a_worker(tmp_path):
    [line] = _errors(_run(tmp_path, "worker", VECTOR_STORE="sqlite"))  # a worker needs no Redis or secret
    assert "VECTOR_STORE=sqlite" in line and "ATRIUM_SINGLE_NODE=true" in line


def test_postgres_without_redis_stops_serve(tmp_path):
    [line] = _errors(_run(tmp_path, "serve", CHAINLIT_AUTH_SECRET=SECRET, **SHARED_STORE))
    assert "REDIS_URL is not set, so each pod would keep its own quota and rate-limit counters" in line
    assert "set REDIS_URL, or ATRIUM_SINGLE_NODE=true" in line


def test_postgres_without_a_session_secret_stops_serve_even_on_a_single_node(tmp_path):
    [line] = _errors(_run(tmp_path, "serve", ATRIUM_SINGLE_NODE="true", VECTOR_STORE="sqlite"))
    assert "CHAINLIT_AUTH_SECRET is not set" in line and "set CHAINLIT_AUTH_SECRET to the same random value" in line


def test_every_problem_is_its_own_error_line(tmp_path):
    lines = _errors(_run(tmp_path, "serve", VECTOR_STORE="sqlite"))
    assert len(lines) == 3
    assert "VECTOR_STORE=sqlite" in lines[0] and "REDIS_URL" in lines[1] and "CHAINLIT_AUTH_SECRET" in lines[2]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_single_node_lets_the_first_two_through(tmp_path, command):
    """With ATRIUM_SINGLE_NODE=true (and the secret), the process passes the checks and goes on to the database,
    whose unreachable address is then the one error."""
    [line] = _errors(_run(tmp_path, command, VECTOR_STORE="sqlite", ATRIUM_SINGLE_NODE="true",
                          CHAINLIT_AUTH_SECRET=SECRET))
    assert line.startswith("error: DATABASE_URL (postgresql+psycopg://atrium@127.0.0.1:1/atrium): cannot connect")


def test_nothing_is_checked_on_the_embedded_default(make_settings):
    assert problems(make_settings()) == []
    assert problems(make_settings(VECTOR_STORE="sqlite", ATRIUM_SINGLE_NODE="false")) == []


def test_a_shared_deployment_passes(make_settings):
    settings = make_settings(DATABASE_URL=PG, REDIS_URL="redis://127.0.0.1:1/0", CHAINLIT_AUTH_SECRET=SECRET,
                             **SHARED_STORE)
    assert problems(settings) == [] and problems(settings, serving=False) == []


def test_a_worker_is_not_asked_for_redis_or_a_session_secret(make_settings):
    assert problems(make_settings(DATABASE_URL=PG, **SHARED_STORE), serving=False) == []
    assert len(problems(make_settings(DATABASE_URL=PG, **SHARED_STORE))) == 2


def test_an_invalid_secret_is_named_but_not_echoed(tmp_path):
    # stderr is the pod's log: a metrics token one character short is still most of the secret; other values stay
    # shown, they are what the operator has to correct
    token = "tok-" + "x" * 11  # 15 characters: one short
    done = _run(tmp_path, "serve", ATRIUM_METRICS_TOKEN=token, ATRIUM_MAX_UPLOAD_MB="lots")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert token not in done.stderr
    assert "ATRIUM_METRICS_TOKEN=<15 characters, not shown>: String should have at least 16 characters" in done.stderr
    assert "ATRIUM_MAX_UPLOAD_MB='lots'" in done.stderr
