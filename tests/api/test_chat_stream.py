"""POST /api/t/{t}/chat with `stream: true` and the OpenAI SDK's stream, in-process: a turn answered without a
model call ("I don't know", a cached answer) is one `ok` row, not an `ok` and a `cancelled` one, when the client
reads the stream to its end and closes it."""

from __future__ import annotations

import json

from openai import OpenAI
from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.db.models import ChatTurn
from backend.knowledge.service import UploadFile
from tests.llm.fakes import make_config_dir, mock, set_tenant

OFF_TOPIC = "What is the recipe for banana bread with pecans?"
ON_TOPIC = "What discount can a Growth deal get without approval?"


def rows(services) -> list[ChatTurn]:
    with services.db.session() as s:
        return list(s.exec(select(ChatTurn).order_by(ChatTurn.id)))


def sse(client, key: str, message: str) -> list[tuple[str, dict]]:
    with client.stream("POST", "/api/t/sales/chat", headers={"Authorization": f"Bearer {key}"},
                       json={"assistant": "sales-assistant", "message": message, "stream": True}) as r:
        assert r.status_code == 200
        events = []
        for block in r.read().decode().split("\n\n"):
            if block.strip():
                kind, data = block.split("\n", 1)
                events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_answers_without_a_model_call_are_one_row_each(tmp_path, make_api_client):
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "Up to 15% needs none.")])
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast"]})
    api = make_api_client(ATRIUM_CONFIG_DIR=str(cfg))
    services = api.app.state.services
    carol = services.principal_from_claims({"sub": "carol", "preferred_username": "carol",
                                            "groups": ["sales", "sales-admins"]})
    text = b"Discount policy. A Growth deal can get up to 15 percent discount without approval.\n"
    out = services.knowledge.upload(carol, "sales", [UploadFile(filename="discounts.txt", data=text)])
    services.knowledge.worker.drain({d["id"] for d in out["documents"]})
    key = issue_key(db=services.db, tenant="sales", scopes=["chat"]).token

    refused = sse(api, key, OFF_TOPIC)  # nothing relevant in the knowledge base: "I don't know", no model call
    assert refused[-1][0] == "done" and refused[-1][1]["answer"].startswith("I don't know")
    first = sse(api, key, ON_TOPIC)
    again = sse(api, key, ON_TOPIC)  # the same first-turn question: the cached answer
    assert not first[-1][1]["cached"] and again[-1][1]["cached"]

    sdk = OpenAI(base_url="http://testserver/api/t/sales/v1", api_key=key, http_client=api, max_retries=0,
                 default_headers={"X-Tenant-ID": "sales"})
    chunks = list(sdk.chat.completions.create(model="sales-assistant", stream=True,
                                              messages=[{"role": "user", "content": OFF_TOPIC}]))
    assert "I don't know" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    turns = rows(services)
    assert [(t.channel, t.outcome) for t in turns] == [("api", "ok")] * 3 + [("openai", "ok")]
    assert [t.cost_usd > 0 for t in turns] == [False, True, False, False]


def test_without_redis_a_chat_is_a_503_with_retry_after_not_a_500(tmp_path, make_api_client, caplog):
    from tests.conftest import free_port

    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "answer")])
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast"]})
    api = make_api_client(ATRIUM_CONFIG_DIR=str(cfg), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    services = api.app.state.services
    key = issue_key(db=services.db, tenant="sales", scopes=["chat"]).token
    assert api.get("/readyz").status_code == 503

    r = api.post("/api/t/sales/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                 json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["error"]["code"] == "quota_store_unavailable" and "REDIS_URL" in r.json()["error"]["message"]
    rest = api.post("/api/t/sales/chat", headers={"Authorization": f"Bearer {key}"},
                    json={"assistant": "sales-assistant", "message": "hi"})
    assert rest.status_code == 503 and rest.json()["error"] == "quota_store_unavailable"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "an outage, not an unhandled error"
