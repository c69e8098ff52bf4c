"""The chat completion's fast path (backend/api/fast_path.py, dispatched by backend/api/fast_dispatch.py) answers
exactly as FastAPI's own handler behind the router and every middleware does.

Every request below is sent twice to the same in-process app: once as it comes (after a first request to its path,
from which the dispatcher learns the route: the fast path serves what it can, past the router) and once with a
dependency override present, which sends every request through the router and FastAPI's handler. Status, body,
headers (request id, security headers), the audit trail and the route the audit names must agree; and the plain
completion must really skip the router and FastAPI's dependency solving."""

from __future__ import annotations

import json

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI

from backend.api.fast_dispatch import FastDispatch
from backend.api.fast_path import FastPathRoute
from backend.auth.api_keys import issue_key
from backend.auth.request_context import matched_route
from backend.auth.surface import walk_routes
from tests.llm.fakes import make_config_dir, mock, set_tenant

PATH = "/api/t/sales/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
# Differ between any two answers: not compared.
VOLATILE = ("id", "created", "turn_id", "cost_usd")
# Headers that differ between any two answers (a new request id unless the caller sent one; the body's length
# with its volatile fields): not compared, but the request id must be there.
VOLATILE_HEADERS = ("x-request-id", "content-length")


def _never() -> None:  # an override of a dependency no route has: FastAPI's handler for everything, no other effect
    raise AssertionError("not a dependency of any route")


@pytest.fixture
def app_and_keys(tmp_path, make_api_client):
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "fast answer"),
                                                mock("smart", "anthropic/claude-sonnet-5-5", "smart answer")],
                          quotas={"requests_per_minute": 1000, "user_requests_per_minute": 1000,
                                  "tokens_per_day": None, "monthly_budget_usd": None})
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast", "smart"]})
    client = make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false", ATRIUM_MAX_BODY_KB="16")
    services = client.app.state.services
    keys = {"sales": issue_key(db=services.db, tenant="sales", scopes=["chat"]).token,
            "finance": issue_key(db=services.db, tenant="finance", scopes=["chat"]).token,
            "no_chat": issue_key(db=services.db, tenant="sales", scopes=["retrieval"]).token}
    return client, keys


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _cases(keys, salt: str):
    user = [{"role": "user", "content": f"hi {salt}"}]  # a new question each round: no answer from the turn cache
    ok = {"authorization": f"Bearer {keys['sales']}", "x-tenant-id": "sales"}
    js = {**ok, "content-type": "application/json"}
    return {
        "assistant": dict(headers=js, content=json.dumps({"model": "sales-assistant", "messages": user})),
        "tier, sampling, system": dict(headers=js, content=json.dumps(
            {"model": "fast", "temperature": 0.5, "seed": 3, "metadata": {"a": 1},
             "messages": [{"role": "system", "content": "be brief"}, *user]})),
        "charset": dict(headers={**ok, "content-type": "application/json; charset=utf-8"},
                        content=json.dumps({"model": "fast", "messages": user})),
        "stream": dict(headers=js, content=json.dumps({"model": "fast", "messages": user, "stream": True,
                                                       "stream_options": {"include_usage": True}})),
        "no credentials": dict(headers={"content-type": "application/json"},
                               content=json.dumps({"model": "fast", "messages": user})),
        "other tenant's key": dict(headers={**js, "authorization": f"Bearer {keys['finance']}"},
                                   content=json.dumps({"model": "fast", "messages": user})),
        "header mismatch": dict(headers={**js, "x-tenant-id": "finance"},
                                content=json.dumps({"model": "fast", "messages": user})),
        "no chat scope": dict(headers={**js, "authorization": f"Bearer {keys['no_chat']}"},
                              content=json.dumps({"model": "fast", "messages": user})),
        "unknown model": dict(headers=js, content=json.dumps({"model": "eng-assistant", "messages": user})),
        "unknown parameter": dict(headers=js, content=json.dumps({"model": "fast", "messages": user, "x": 1})),
        "tools": dict(headers=js, content=json.dumps({"model": "fast", "messages": user, "tools": [{}]})),
        "escaped lone surrogate": dict(headers=js, content=b'{"model": "fast", "messages": [{"role": "user", '
                                                           b'"content": "a\\ud800b"}]}'),
        "encoded lone surrogate": dict(headers=js, content=b'{"model": "fast", "messages": [{"role": "user", '
                                                           b'"content": "a\xed\xa0\x80b"}]}'),
        "escaped pair": dict(headers=js, content=b'{"model": "fast", "messages": [{"role": "user", '
                                                 b'"content": "\\ud83d\\ude00"}]}'),
        "invalid body": dict(headers=js, content=json.dumps({"model": "fast", "messages": []})),
        "invalid body, no credentials": dict(headers={"content-type": "application/json"},
                                             content=json.dumps({"model": "fast"})),
        "invalid JSON": dict(headers=js, content=b'{"model": "fast", '),
        "invalid JSON, no credentials": dict(headers={"content-type": "application/json"}, content=b"{"),
        "empty body": dict(headers=js, content=b""),
        "text/plain": dict(headers={**ok, "content-type": "text/plain"},
                           content=json.dumps({"model": "fast", "messages": user})),
                "UTF-16": dict(headers=js, content=json.dumps({"model": "fast", "messages": user}).encode("utf-16")),
        "stream, UTF-16": dict(headers=js, content=json.dumps({"model": "fast", "messages": user, "stream": True})
                               .encode("utf-16")),
        "query string": dict(headers=js, content=json.dumps({"model": "fast", "messages": user}), params={"a": "1"}),
        "too deep": dict(headers=js, content=b"[" * 100_000 + b"]" * 100_000),
        "caller's request id": dict(headers={**js, "x-request-id": "caller-id.1"},
                                    content=json.dumps({"model": "fast", "messages": user})),
        "no content-length": dict(headers=js, content=iter([json.dumps({"model": "fast", "messages": user}).encode()])),
        "over the body limit": dict(headers=js, content=json.dumps({"model": "fast", "messages": user,
                                                                    "user": "x" * (17 * 1024)})),
        "trailing slash": dict(headers=js, content=json.dumps({"model": "fast", "messages": user}), path=PATH + "/",
                               follow_redirects=False),  # the redirect itself compared
        "other case": dict(headers=js, content=json.dumps({"model": "fast", "messages": user}),
                           path=PATH.replace("completions", "Completions")),
        "encoded tenant": dict(headers=js, content=json.dumps({"model": "fast", "messages": user}),
                               path=PATH.replace("sales", "sa%6Ces")),
        "encoded slash": dict(headers=js, content=json.dumps({"model": "fast", "messages": user}),
                              path=PATH.replace("sales", "sa%2Fles")),
        "another tenant's URL": dict(headers={**js, "x-tenant-id": "finance"},
                                     content=json.dumps({"model": "fast", "messages": user}),
                                     path=PATH.replace("sales", "finance")),
        "unknown tenant's URL": dict(headers={**js, "x-tenant-id": "nobody"},
                                     content=json.dumps({"model": "fast", "messages": user}),
                                     path=PATH.replace("sales", "nobody")),
        "GET": dict(headers=js, method="GET"),
        "HEAD": dict(headers=js, method="HEAD"),
    }


def test_fast_path_answers_as_fastapi_does(app_and_keys, monkeypatch):
    client, keys = app_and_keys
    audit = client.app.state.services.audit
    recorded: list[tuple] = []
    real_record = audit.record

    def record(kind, **fields):  # noqa: ANN001, ANN003, ANN202
        recorded.append((kind, fields.get("reason"), fields.get("status"), fields.get("subject"), fields.get("route"),
                         matched_route(fields.get("route") or "")))
        return real_record(kind, **fields)

    monkeypatch.setattr(audit, "record", record)
    dispatcher = _dispatcher(client.app)
    case = [""]
    served = _counting(monkeypatch, dispatcher, case)
    for name in _cases(keys, ""):
        case[0] = name
        _send(client, _cases(keys, f"{name} first")[name])  # the dispatcher learns where the router sends its path
        answers = []
        for slow in (False, True):
            kw = _cases(keys, f"{name} {slow}")[name]
            if slow:
                client.app.dependency_overrides[_never] = _never
            recorded.clear()
            r = _send(client, kw)
            body = r.json() if r.headers.get("content-type") == "application/json" and r.content else r.text
            assert r.headers["x-request-id"] == kw["headers"].get("x-request-id", r.headers["x-request-id"]), name
            answers.append((r.status_code, _strip(body), list(recorded),
                            sorted((k, v) for k, v in r.headers.multi_items() if k not in VOLATILE_HEADERS)))
            client.app.dependency_overrides.clear()
        if not name.startswith("stream"):
            assert answers[0] == answers[1], name
        else:  # chunk ids and timestamps differ: the events' shapes and the last chunk's answer must not
            events = [[json.loads(line[6:]) if line.startswith("data: {") else line
                       for line in a[1].split("\n\n") if line] for a in answers]
            assert answers[0][0] == answers[1][0] == 200 and _strip(events[0]) == _strip(events[1]), name
        if name == "no credentials":  # the audit is really watched
            assert answers[0][2] and answers[0][2][0][:3] == ("denied", "not_authenticated", 401)
            assert answers[0][2][0][5] == "POST /api/t/{tenant}/v1/chat/completions"  # the route the audit names
        if name == "assistant":  # headers are really compared
            assert ("x-content-type-options", "nosniff") in answers[0][3]
    # The plain requests were served by the dispatcher, past the router; the refused ones too.
    assert {"assistant", "charset", "no credentials", "other tenant's key", "another tenant's URL",
            "caller's request id"} <= set(served), served
    wrongly = {"query string", "no content-length", "over the body limit", "GET", "trailing slash"} & set(served)
    assert not wrongly, wrongly


def _send(client, kw: dict):  # noqa: ANN001, ANN202
    kw = dict(kw)
    method, path = kw.pop("method", "POST"), kw.pop("path", PATH)
    if method != "POST":
        kw.pop("content", None)
    return client.request(method, path, **kw)


def _dispatcher(app) -> FastDispatch:  # noqa: ANN001
    node = app.middleware_stack
    while not isinstance(node, FastDispatch):
        node = node.app
    return node


def _counting(monkeypatch, dispatcher: FastDispatch, case: list[str]) -> list[str]:  # noqa: ANN001
    """The cases (named by `case[0]` when sent) the dispatcher served itself, past the router."""
    served: list[str] = []
    real = dispatcher._serve

    async def serve(routed, scope, receive, send):  # noqa: ANN001, ANN202
        replay = await real(routed, scope, receive, send)
        if replay is None:
            served.append(case[0])
        return replay

    monkeypatch.setattr(dispatcher, "_serve", serve)
    return served


def test_the_plain_completion_skips_dependency_solving(app_and_keys, monkeypatch):
    client, keys = app_and_keys
    solved = []
    real = fastapi.routing.solve_dependencies

    async def counting(*args, **kwargs):
        solved.append(kwargs["request"].url.path)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    headers = {"authorization": f"Bearer {keys['sales']}", "x-tenant-id": "sales"}
    r = client.post(PATH, headers=headers, json={"model": "fast", "messages": USER})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fast answer"
    assert solved == []
    r = client.post(PATH, headers=headers, json={"model": "fast", "messages": []})  # FastAPI's words for this
    assert r.status_code == 400 and solved == [PATH]
    route = next(r for r in walk_routes(client.app.router.routes) if getattr(r, "path", "").endswith("completions"))
    assert route.fast_path_active


def test_a_route_with_a_dependency_the_fast_path_does_not_do_has_none():
    calls = []

    async def extra() -> None:
        calls.append("extra")

    async def endpoint() -> dict:
        return {"slow": True}

    async def fast(request):  # noqa: ANN001, ANN202
        return None if calls else fastapi.responses.JSONResponse({"fast": True})

    fast.replaces = ()
    endpoint.fast_path = fast
    router = APIRouter(route_class=FastPathRoute)
    router.add_api_route("/x", endpoint, methods=["GET"])
    from fastapi.testclient import TestClient

    plain = FastAPI()
    plain.include_router(router)
    assert TestClient(plain).get("/x").json() == {"fast": True}
    guarded = FastAPI(dependencies=[Depends(extra)])  # the app's dependency is not one the fast path does
    guarded.include_router(router)
    assert TestClient(guarded).get("/x").json() == {"slow": True} and calls == ["extra"]


@pytest.mark.parametrize("content", [{"a": "é ✓ \u2028 \x00", "b": [1.5, 1e-05, 10**20, None, True]}, {}])
def test_the_answer_is_jsonresponses_bytes_and_headers(content):
    from fastapi.responses import JSONResponse

    from backend.api.openai_models import CompletionAnswer

    ours = CompletionAnswer(content, [(b"x-atrium-model", b"m"), (b"x-atrium-cached", b"false")])
    theirs = JSONResponse(content, headers={"x-atrium-model": "m", "x-atrium-cached": "false"})
    assert (ours.status_code, ours.body, ours.raw_headers, ours.background) == (
        theirs.status_code, theirs.body, theirs.raw_headers, theirs.background)
    with pytest.raises(ValueError):  # NaN is no JSON: refused alike
        CompletionAnswer({"x": float("nan")}, [])
    with pytest.raises(ValueError):
        JSONResponse({"x": float("nan")})
