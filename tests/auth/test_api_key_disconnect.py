"""A key verified on a connection the server drops under the query (after the pool's ping found it alive) is still
verified: the read and the last-use stamp run again on a new connection, once. It was a 500 for a good key
(test_durable_turns' churn test failed on it once under load). Real PostgreSQL: the connection's backend is
terminated between the pool's ping and the key's SELECT."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from backend.auth.api_keys import InvalidApiKey, issue_key, verify_key
from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade

pytestmark = pytest.mark.postgres


def _terminating(db: Database, admin_url: str, times: int) -> list[int]:
    """Terminates the backend of the next `times` SELECTs on api_key, just before each runs."""
    killed: list[int] = []
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def kill(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ANN202
        if len(killed) < times and "FROM api_key" in statement:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as a:
                a.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            killed.append(pid)

    return killed


def test_a_connection_dropped_under_the_key_lookup_is_replaced_once(postgres_url):
    from backend.settings import _normalise_db_url

    url = _normalise_db_url(postgres_url)
    upgrade(url)
    db = Database(make_engine(url))
    try:
        token = issue_key(db=db, tenant="finance", scopes=["chat"]).token
        killed = _terminating(db, url, times=1)
        assert verify_key(db=db, token=token).tenant == "finance"
        assert len(killed) == 1  # the first lookup's connection really was dropped
        with pytest.raises(InvalidApiKey):  # a wrong secret is still refused after a dropped connection
            _terminating(db, url, times=1)
            verify_key(db=db, token=token[:-4] + "abcd")
        killed_twice = _terminating(db, url, times=2)
        with pytest.raises(sa.exc.DBAPIError):  # once, not forever: a database that keeps dropping is an error
            verify_key(db=db, token=token)
        assert len(killed_twice) == 2
    finally:
        db.engine.dispose()
