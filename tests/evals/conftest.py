"""Evaluation tests: runs over small sets, on the shipped local model or on scripted models."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import session_cookie_for

EDITORS = {"sales": "bob", "engineering": "dave", "finance": "frank"}


def wait_for_run(client: Any, tenant: str, assistant: str, run_id: str, cookies: dict[str, str], *,
                 timeout: float = 600) -> dict[str, Any]:
    """The run once it stopped (finished or failed), read back over the API."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/t/{tenant}/evals/{assistant}/runs/{run_id}", cookies=cookies)
        assert r.status_code == 200, r.text
        run = r.json()
        if run["status"] in ("finished", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']} ({run['done']}/{run['total']})"
        time.sleep(0.2)


@pytest.fixture
def cookies_for(monkeypatch):
    """cookies_for("bob") -> a demo user's session cookies, for any in-process app (login_as would build the default
    app first, and with it seed the demo sets into the shared data dir)."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    return session_cookie_for


@pytest.fixture
def no_demo_sets(tmp_path):
    """An ATRIUM_EVALS_DIR without files: the app starts with empty sets."""
    path = tmp_path / "no-demo-sets"
    path.mkdir()
    return str(path)
