"""Migrations on PostgreSQL run under an advisory lock (N pods starting together take turns; one migrates), and
ATRIUM_MIGRATE_ON_START=false leaves them to `atrium migrate`, stopping on a database that is behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from backend.config_files import ConfigError
from backend.db.migrate import MIGRATION_LOCK_KEY, alembic_config, pending, prepare, upgrade
from tests.conftest import _SCRUB, REPO, free_port

SECRET = "s" * 48


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _waiting_for_the_lock(admin: sa.engine.Connection) -> bool:
    sql = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
           "AND ((classid::bigint << 32) | objid::bigint) = :key")
    return admin.execute(sa.text(sql), {"key": MIGRATION_LOCK_KEY}).scalar_one() > 0


def test_an_upgrade_waits_for_the_lock_holder(postgres_url):
    holder_engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with holder_engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        holder.commit()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                upgrade(postgres_url)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not _waiting_for_the_lock(holder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_for_the_lock(holder), "the upgrade never asked for the lock"
        assert thread.is_alive() and "alembic_version" not in _tables(postgres_url)  # it waits, it has not begun
        holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        holder.commit()
        thread.join(120)
    holder_engine.dispose()
    assert not thread.is_alive() and not errors, errors
    assert pending(postgres_url) == set() and "kb_document" in _tables(postgres_url)


def _serve(tmp_path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen, str, object]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update({"ATRIUM_DATA_DIR": str(tmp_path / name), "ATRIUM_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
                 **env})
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=full, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log


def _messages(log) -> list[str]:
    return [json.loads(line).get("message") for line in log.read_text(errors="replace").splitlines()
            if line.startswith("{")]


@pytest.mark.slow
def test_two_app_processes_starting_together_on_an_empty_database_both_come_up_and_one_migrates(
        tmp_path, postgres_url):
    assert _tables(postgres_url) == set()
    env = {"DATABASE_URL": postgres_url, "ATRIUM_SINGLE_NODE": "true", "CHAINLIT_AUTH_SECRET": SECRET,
           "VECTOR_STORE": "sqlite",  # the machine's PostgreSQL has no pgvector
           "ATRIUM_INGEST_WORKER": "false"}
    servers = [_serve(tmp_path, f"pod{i}", env) for i in range(2)]
    try:
        up = set()
        deadline = time.monotonic() + 240
        while len(up) < 2 and time.monotonic() < deadline:
            for i, (proc, url, log) in enumerate(servers):
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        up.add(i)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        assert up == {0, 1}, [log.read_text()[-2000:] for _, _, log in servers]
        assert all(httpx.get(f"{url}/readyz", timeout=10).status_code == 200 for _, url, _ in servers)
    finally:
        for proc, _, _ in servers:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    said = [_messages(log) for _, _, log in servers]
    assert sorted(m.count("database migrated") for m in said) == [0, 1]  # one migrated ...
    assert sorted(m.count("database schema is current") for m in said) == [0, 1]  # ... the other found it done
    assert pending(postgres_url) == set()


def test_migrate_on_start_false_refuses_a_database_that_is_behind(tmp_path, postgres_url):
    command.upgrade(alembic_config(postgres_url), "0004_conversation_elements")  # an older release's schema
    with pytest.raises(ConfigError) as err:
        prepare(postgres_url, on_start=False)
    assert "ATRIUM_MIGRATE_ON_START=false" in str(err.value) and "atrium migrate" in str(err.value)
    assert pending(postgres_url)  # nothing was applied
    upgrade(postgres_url)  # what `atrium migrate` does
    prepare(postgres_url, on_start=False)  # now current: no error, nothing to do


@pytest.mark.slow
@pytest.mark.parametrize("command_name", ["serve", "worker"])
def test_a_process_with_migrations_off_on_a_behind_database_stops_naming_atrium_migrate(
        tmp_path, postgres_url, command_name):
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update({"ATRIUM_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": postgres_url,
                 "ATRIUM_MIGRATE_ON_START": "false", "ATRIUM_SINGLE_NODE": "true", "CHAINLIT_AUTH_SECRET": SECRET})
    done = subprocess.run([sys.executable, "-m", "backend.cli", command_name, *(
        ["--port", str(free_port())] if command_name == "serve" else [])], cwd=REPO, env=full, capture_output=True,
        text=True, timeout=180)
    assert done.returncode == 2, done.stderr[-3000:]
    [line] = [ln for ln in done.stderr.splitlines() if not ln.startswith("{")]
    assert line.startswith("error: the database schema is behind (missing migrations ") and \
        "run `atrium migrate`" in line, line
    assert _tables(postgres_url) == set()  # empty, and left so
