"""Served apps that several browser test files set up alike: the studio's Tests tab on the sales pricing rules, and
members' earlier usage written into a served app's database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import _SCRUB, REPO, LiveServer, start_server, stop_server


@contextmanager
def studio_server(tmp: Path, cfg: Path) -> Iterator[LiveServer]:
    """A served app on the config dir `cfg` with a copy of the prompts (the studio edits them), no demo test sets
    (the tests write their own cases) and Sales' pricing rules ingested (what the cases ask about)."""
    prompts, empty = tmp / "prompts", tmp / "no-demo-sets"
    subprocess.run(["cp", "-r", str(REPO / "prompts"), str(prompts)], check=True)
    empty.mkdir()
    extra = {"ATRIUM_PROMPTS_DIR": str(prompts), "ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_EVALS_DIR": str(empty)}
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(ATRIUM_DATA_DIR=str(tmp / "data"), **extra)
    done = subprocess.run([sys.executable, "-m", "backend.cli", "ingest", "--tenant", "sales",
                           str(REPO / "demo" / "corpus" / "sales" / "pricing-rules.md")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    srv = start_server(tmp, extra_env=extra)
    try:
        yield srv
    finally:
        stop_server(srv)


def seed_turns(server: LiveServer, turns: list[dict[str, Any]], **common: Any) -> None:
    """Chat turns written straight into a served app's SQLite, each `turns` item's fields with `common`'s, all
    created now (what members used earlier today: the quota counters start from SQL at their first call)."""
    import sqlalchemy as sa
    from sqlmodel import Session

    from backend.db.models import ChatTurn

    engine = sa.create_engine(f"sqlite:///{server.data_dir / 'atrium.db'}")
    now = datetime.now(UTC)
    with Session(engine) as s:
        for turn in turns:
            s.add(ChatTurn(**common, **turn, created_at=now))
        s.commit()
    engine.dispose()
