"""Apply Alembic migrations programmatically (at start, in tests, and by the CLI).

On PostgreSQL the upgrade runs under a session-level advisory lock: N pods starting together (or a migration Job
and a pod) take turns, and those after the first find nothing left to do. SQLite is one file on one host, where
Alembic's own transaction is enough.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from backend.config_files import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


log = logging.getLogger("atrium.db")
# pg_advisory_lock's key: an arbitrary constant of our own, the same in every process of every version.
MIGRATION_LOCK_KEY = 7_310_582_441
_PENDING_FIX = "run `atrium migrate` (e.g. as the migration Job) first, or set ATRIUM_MIGRATE_ON_START=true"


def upgrade(url: str) -> None:
    if make_url(url).get_backend_name() != "postgresql":
        # "heads": independent feature branches (knowledge, governance, ...) all branch from 0001.
        command.upgrade(alembic_config(url), "heads")
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                before = _current(conn)
                if before == _heads():
                    log.info("database schema is current", extra={"revisions": sorted(before)})
                    return
                conn.commit()  # the lock is the session's; the migrations run in a transaction of their own
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "heads")
                conn.commit()
                log.info("database migrated", extra={"from": sorted(before), "to": sorted(_heads())})
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


def pending(url: str) -> set[str]:
    """The migration heads the database does not have yet (empty: the schema is current)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return _heads() - _current(conn)
    finally:
        engine.dispose()


def prepare(url: str, *, on_start: bool) -> None:
    """At a process start: migrate (ATRIUM_MIGRATE_ON_START, the default), or only make sure someone did."""
    if on_start:
        upgrade_or_explain(url)
        return
    missing = _explained(pending, url)
    if missing:
        raise ConfigError(f"the database schema is behind (missing migrations {', '.join(sorted(missing))}) and "
                          f"ATRIUM_MIGRATE_ON_START=false: {_PENDING_FIX}")


def _heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _current(conn: Connection) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())


def upgrade_or_explain(url: str) -> None:
    """upgrade(), with a database that cannot be reached or opened as one ConfigError naming it and the fix
    (instead of SQLAlchemy's and the driver's chained tracebacks)."""
    _explained(upgrade, url)


def _explained(step, url: str):  # noqa: ANN001, ANN202 - upgrade or pending, and what it returns
    try:
        return step(url)
    except (OperationalError, InterfaceError) as exc:
        text = str(exc.orig or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            raise ConfigError(f"{parsed.database}: cannot open the SQLite database ({reason}): make ATRIUM_DATA_DIR "
                              "a writable folder, or set DATABASE_URL") from None
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(f"DATABASE_URL ({shown}): cannot connect ({reason}): check the host, port, user and "
                          "password, and that the server is running") from None
