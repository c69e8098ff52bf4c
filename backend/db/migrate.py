"""Apply Alembic migrations programmatically (at start, in tests, and by the CLI)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from backend.config_files import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    # "heads": independent feature branches (knowledge, governance, ...) all branch from 0001.
    command.upgrade(alembic_config(url), "heads")


def upgrade_or_explain(url: str) -> None:
    """upgrade(), with a database that cannot be reached or opened as one ConfigError naming it and the fix
    (instead of SQLAlchemy's and the driver's chained tracebacks)."""
    try:
        upgrade(url)
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
