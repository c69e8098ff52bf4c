"""Served apps that several browser test files set up alike: the studio's Tests tab on the sales pricing rules, and
members' earlier usage written into a served app's database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
