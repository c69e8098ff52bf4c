"""A throw-away PostgreSQL 16 with pgvector for the benchmarks: pgserver (the dev extra) in a temp dir, or the
server given with --pgvector-url. Either way a fresh database, dropped afterwards."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa


@contextlib.contextmanager
def pgvector_database(admin_url: str | None = None) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        if admin_url is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR
                import pgserver
            # As root pgserver runs PostgreSQL as its own `pgserver` user: a folder it can reach, deleted after.
            pgdata = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="atrium-bench-pg-"))) / "data"
            pgdata.mkdir()
            server = pgserver.get_server(pgdata, cleanup_mode="delete")
            stack.callback(server.cleanup)
            admin_url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        name = f"atrium_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        base, sep, query = admin_url.partition("?")
        try:
            yield f"{base.rsplit('/', 1)[0]}/{name}{sep}{query}"
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
