"""`atrium seed-demo` loads the demo knowledge bases once; /readyz names the vector store when it fails;
a key with only the `chat` scope gets grounded answers (retrieval inside a chat turn is part of chatting)."""

from __future__ import annotations

import contextlib
import io

from backend.seed import seed_demo
from tests.api.test_documents import CORPUS, wait_ready
from tests.conftest import session_cookie_for
from tests.knowledge.conftest import member_of


async def test_seed_demo_once_and_cross_department_questions_find_nothing(services):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert seed_demo(services, if_empty=True) == 0
    kb = services.knowledge
    for tenant in ("sales", "engineering", "finance"):
        docs = kb.list_documents(member_of(tenant), tenant)
        assert len(docs) == 3 and all(d["status"] == "ready" for d in docs), docs
    chunks = kb.store.count("sales")
    with contextlib.redirect_stdout(out):
        assert seed_demo(services, if_empty=True) == 0
    assert "sales already has documents, skipped" in out.getvalue() and kb.store.count("sales") == chunks
    # a finance question asked in sales: below the relevance threshold, so the chat will say it does not know
    assert await kb.retrieve(principal=member_of("sales"), tenant="sales",
                             query="What's the daily meal allowance in San Francisco?") == []
    found = await kb.retrieve(principal=member_of("finance"), tenant="finance",
                              query="What's the daily meal allowance in San Francisco?")
    assert found and found[0].title and found[0].quote


def test_readiness_names_the_vector_store(make_api_client, pinecone):
    client = make_api_client(VECTOR_STORE="pinecone", PINECONE_API_KEY=pinecone.api_key,
                             PINECONE_INDEX_HOST=pinecone.host)
    operator = session_cookie_for("root")  # /readyz's details are for platform admins
    assert client.get("/readyz", cookies=operator).json()["parts"]["vector_store"] == "ok"
    pinecone.close()
    r = client.get("/readyz", cookies=operator)
    assert r.status_code == 503 and r.json()["failing"] == ["vector_store"]
    assert "Pinecone describe_index_stats failed" in r.json()["parts"]["vector_store"]


def test_chat_only_key_gets_grounded_answers(api_client, login_as):
    carol = {"cookies": login_as("carol")}
    files = [("files", ("pricing-rules.md", (CORPUS / "sales/pricing-rules.md").read_bytes(), "text/markdown"))]
    r = api_client.post("/api/t/sales/documents", files=files, **carol)
    wait_ready(api_client, "sales", [r.json()["documents"][0]["id"]], **carol)
    key = api_client.post("/api/t/sales/keys", json={"name": "bot", "scopes": ["chat"]}, **carol).json()["token"]
    r = api_client.post("/api/t/sales/chat", headers={"Authorization": f"Bearer {key}"},
                        json={"assistant": "sales-assistant", "message": "Who must approve a discount above 20%?"})
    assert r.status_code == 200, r.text
    assert r.json()["citations"][0]["title"] == "Northwind Cloud Pricing Rules"
