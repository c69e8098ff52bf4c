"""FastDispatch (backend/api/fast_dispatch.py) skips only what it knows passes the request untouched, dispatches only
the paths the router itself sent to a fast path, and answers a failure as the generic way does. The answers
themselves are compared request by request in tests/api/test_openai_fast_path.py."""

from __future__ import annotations

import pytest
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.testclient import TestClient
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Router

from backend.api.fast_dispatch import FastDispatch
from backend.api.limits import BodyLimit
from backend.auth.api_keys import issue_key
from backend.auth.oidc_logout import IdpLogout
from backend.auth.request_context import ClientIpContext
from backend.auth.surface_guard import SurfaceGuard
from tests.api.test_openai_fast_path import PATH, _dispatcher
from tests.llm.fakes import make_config_dir, mock, set_tenant
from ui.chat_guards import ChatGuards


class _Foreign:  # a middleware added later, that FastDispatch knows nothing about
    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        await self.app(scope, receive, send)


def _stack(*classes: type, settings) -> object:  # noqa: ANN001
    app: object = AsyncExitStackMiddleware(Router())
    app = ExceptionMiddleware(app)
    for cls in reversed(classes):
        if cls is BodyLimit:
            app = BodyLimit(app, settings=settings)
        elif cls in (SurfaceGuard, IdpLogout):  # never called here: only their class is looked at
            layer = cls.__new__(cls)
            layer.app = app
            app = layer
        else:
            app = cls(app)
    return app


def test_only_layers_that_pass_the_request_untouched_are_skipped(make_settings):
    settings = make_settings()
    real = (BodyLimit, SurfaceGuard, IdpLogout, ChatGuards, ClientIpContext)
    dispatch = FastDispatch(_stack(*real, settings=settings))
    assert dispatch.errors is not None and len(dispatch.limits) == 1
    for at in range(len(real) + 1):  # a foreign layer anywhere below turns the dispatch off
        classes = (*real[:at], _Foreign, *real[at:])
        assert FastDispatch(_stack(*classes, settings=settings)).errors is None, at


@pytest.fixture
def app_and_key(tmp_path, make_api_client):
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "fast answer")],
                          quotas={"requests_per_minute": 1000, "user_requests_per_minute": 1000,
                                  "tokens_per_day": None, "monthly_budget_usd": None})
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast"]})
    client = make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false")
    key = issue_key(db=client.app.state.services.db, tenant="sales", scopes=["chat", "retrieval"]).token
    return client, {"authorization": f"Bearer {key}", "x-tenant-id": "sales"}


def test_only_paths_the_router_sent_to_a_fast_path_are_dispatched(app_and_key):
    client, headers = app_and_key
    dispatch = _dispatcher(client.app)
    assert dispatch.errors is not None  # the app's own stack: on
    for _ in range(2):
        assert client.post("/api/t/sales/search", headers=headers, json={"query": "x"}).status_code in (200, 422)
        body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
        assert client.post(PATH, headers=headers, json=body).status_code == 200
    assert set(dispatch.routed) == {PATH}
    long = PATH.replace("sales", "s" * 250)  # the route's, but too long a path to remember
    assert client.post(long, headers={**headers, "x-tenant-id": "s" * 250}, json=body).status_code == 403
    assert set(dispatch.routed) == {PATH}


def test_a_failure_in_the_fast_path_is_the_same_500(app_and_key, monkeypatch):
    client, headers = app_and_key
    quiet = TestClient(client.app, raise_server_exceptions=False)

    async def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("a bug")

    answers = []
    for slow in (False, True):
        body = {"model": "fast", "messages": [{"role": "user", "content": f"hi {slow}"}]}
        assert quiet.post(PATH, headers=headers, json=body).status_code == 200  # learnt (and not broken yet)
        monkeypatch.setattr(client.app.state.services.chat, "run", broken)
        if slow:
            client.app.dependency_overrides[len] = len  # FastAPI's handler, past the router
        r = quiet.post(PATH, headers=headers, json=body)
        client.app.dependency_overrides.clear()
        monkeypatch.undo()
        detail = r.json()["error"]
        answers.append((r.status_code, detail["type"] if isinstance(detail, dict) else detail,
                        sorted(k for k in r.headers if k != "content-length")))
    assert answers[0] == answers[1] and answers[0][0] == 500, answers
