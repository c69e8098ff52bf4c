"""A connection the server drops after a session's work is done (PostgreSQL terminating it: a failover, an
operator, a pooler) must not turn a finished read into a 500: closing the session cannot roll back on a dead
connection, and needs not (the server already has). Seen under `tests/governance/test_durable_turns.py`'s churn:
an API key verified, then its session's close failed with AdminShutdown."""

from __future__ import annotations

import sqlalchemy as sa

from backend.db.engine import Database, make_engine


def test_a_session_whose_connection_is_terminated_after_its_read_closes_quietly(postgres_url):
    db = Database(make_engine(postgres_url))
    killer = sa.create_engine(postgres_url)
    try:
        with db.session() as session:
            pid = session.execute(sa.text("select pg_backend_pid()")).scalar_one()  # the read, done
            with killer.connect() as conn:
                assert conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        # The pool threw the dead connection away: the next session works.
        with db.session() as session:
            assert session.execute(sa.text("select 1")).scalar_one() == 1
    finally:
        killer.dispose()
        db.engine.dispose()
