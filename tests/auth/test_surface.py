"""The surface table against the live app: every HTTP route and socket.io event the process exposes — Atrium's,
the pages' and the mounted chat framework's — is listed with its guard, and whatever is not listed is refused.
A Chainlit upgrade that adds a route or an event fails here until someone decides about it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi import APIRouter, Depends

from backend.api.deps import require
from backend.auth.surface import (
    HTTP_SURFACE,
    SOCKET_SURFACE,
    SurfaceError,
    SurfaceTable,
    tenant,
    verify_app_routes,
)
from tests.conftest import REPO

# Builds the whole app with the chat mounted (Chainlit is a process-wide singleton: a process of its own) and
# reports what it exposes that the table does not list.
_ENUMERATE = """
import json, os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["ATRIUM_DATA_DIR"] = sys.argv[1]
from app import create_app
from backend.auth.surface import SurfaceTable, verify_app_routes, walk_routes, socket_entry
app = create_app()
from chainlit.server import app as chainlit_app, sio
from ui.surface import unlisted_chat_routes
table = SurfaceTable()
out = {
    "app": verify_app_routes(app, table),
    "chat": unlisted_chat_routes(chainlit_app, table),
    "events": sorted(sio.handlers["/"]),
    "unlisted_events": [e for e in sio.handlers["/"] if socket_entry(e) is None],
    "unguarded_events": [e for e, h in sio.handlers["/"].items() if not getattr(h, "_atrium_guarded", False)],
    "chat_routes": sorted({getattr(r, "path", "") for r in walk_routes(chainlit_app.router.routes)}),
}
print("SURFACE " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def live_surface(tmp_path_factory) -> dict:
    data = tmp_path_factory.mktemp("surface")
    run = subprocess.run([sys.executable, "-c", _ENUMERATE, str(data)], cwd=REPO, capture_output=True, text=True,
                         timeout=180)
    line = next((x for x in run.stdout.splitlines() if x.startswith("SURFACE ")), None)
    assert line, run.stdout[-2000:] + run.stderr[-4000:]
    return json.loads(line.removeprefix("SURFACE "))


def test_every_route_of_the_app_is_listed_with_the_guard_it_really_has(live_surface):
    assert live_surface["app"] == []


def test_every_route_of_the_chat_framework_is_listed(live_surface):
    assert live_surface["chat"] == []
    # The enumeration sees Chainlit's real routes (not an empty router).
    assert {"/project/file", "/auth/jwt", "/feedback", "/{full_path:path}"} <= set(live_surface["chat_routes"])


def test_every_socket_event_is_listed_and_guarded(live_surface):
    assert live_surface["unlisted_events"] == []
    assert live_surface["unguarded_events"] == []
    assert {"connect", "client_message", "edit_message"} <= set(live_surface["events"])
    assert {e.event for e in SOCKET_SURFACE} == set(live_surface["events"])


def test_the_table_names_each_route_once():
    seen: set[tuple[str, str]] = set()
    for entry in HTTP_SURFACE:
        for method in entry.methods:
            assert (method, entry.path) not in seen, (method, entry.path)
            seen.add((method, entry.path))


def test_a_route_missing_from_the_table_or_guarded_otherwise_stops_the_app(make_api_client):
    from fastapi import FastAPI

    table = SurfaceTable()
    app = FastAPI()
    router = APIRouter(prefix="/api/t/{tenant}")

    @router.get("/secrets")
    def unlisted() -> dict:
        return {}

    @router.get("/keys", dependencies=[Depends(require("chat"))])  # listed as tenant:admin
    def weaker() -> dict:
        return {}

    app.include_router(router)
    problems = verify_app_routes(app, table)
    assert any("GET /api/t/{tenant}/secrets: not in the surface table" in p for p in problems)
    assert any("GET /api/t/{tenant}/keys: the table says tenant:admin, its dependencies apply tenant:chat" in p
               for p in problems)

    # The real app refuses to start with such a route.
    import backend.api as api

    original = api.routers

    def with_extra() -> list:
        return [*original(), router]

    api.routers = with_extra
    try:
        with pytest.raises(SurfaceError, match="secrets"):
            make_api_client()
    finally:
        api.routers = original


def test_matching_follows_the_table():
    table = SurfaceTable()
    assert str(table.match("POST", "/chat/project/file").entry.guard) == "tenant:ingest"
    assert table.match("POST", "/chat/project/file").entry.guard == tenant("ingest", tenant_from="chat_session")
    assert table.match("POST", "/chat/auth/jwt").entry.guard.kind == "blocked"
    assert table.match("GET", "/chat/thread/3f1c").entry.guard.kind == "anonymous"
    assert table.match("GET", "/chat/thread/a/b").entry is None
    assert table.match("HEAD", "/chat/").entry is not None
    assert table.match("DELETE", "/chat/user").entry is None
