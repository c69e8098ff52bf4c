"""Tenant isolation of the knowledge base, with every vector store: sales documents carry unique markers;
every retrieval path from engineering (search, chat, Dify with its key and sales' knowledge_id, a forged
X-Tenant-ID) never returns them, while sales finds them (so the test cannot pass vacuously)."""

from __future__ import annotations

import pytest

from tests.api.test_documents import CORPUS, wait_ready
from tests.conftest import session_cookie_for

MARKERS = ["Project BLUEHERON-Compass", "Project BLUEHERON-7", "Project BLUEHERON-Echo"]
# Questions whose answer passage holds each marker (dense-only Pinecone retrieval ranks by meaning).
QUESTIONS = {
    "Project BLUEHERON-Compass": "What is the sales forecast review board called?",
    "Project BLUEHERON-7": "Which committee reviews discount requests above 20%?",
    "Project BLUEHERON-Echo": "How is every new rep certified on objection handling?",
}


def _upload(client, tenant: str, cookies) -> None:
    files = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in sorted((CORPUS / tenant).glob("*.md"))]
    r = client.post(f"/api/t/{tenant}/documents", files=files, cookies=cookies)
    assert r.status_code == 202, r.text
    docs = wait_ready(client, tenant, [d["id"] for d in r.json()["documents"]], cookies=cookies)
    assert all(d["status"] == "ready" for d in docs), docs


def _eng_admin_cookie() -> dict[str, str]:
    from tests.conftest import session_token

    claims = {"sub": "eng-admin", "groups": ["engineering", "engineering-admins"]}
    return {"access_token": session_token("eng-admin", claims)}


@pytest.fixture
def login_as(monkeypatch):
    """Session cookies without the shared `api_client` fixture: a second app on the same data dir would run
    a second ingestion worker, with the other store, on the same job queue."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    return session_cookie_for


@pytest.fixture(params=["sqlite", "pinecone", "pgvector"])
def client(request, make_api_client, login_as, pinecone):
    if request.param == "sqlite":
        return make_api_client()
    if request.param == "pgvector":  # PostgreSQL for everything; the vector store is pgvector by default there
        client = make_api_client(DATABASE_URL=request.getfixturevalue("pgvector_url"),
                                 REDIS_URL=request.getfixturevalue("redis_url"))
        assert client.app.state.services.knowledge.store.name == "pgvector"
        return client
    return make_api_client(VECTOR_STORE="pinecone", PINECONE_API_KEY=pinecone.api_key,
                           PINECONE_INDEX_HOST=pinecone.host)


def test_other_tenant_never_sees_the_markers(client, login_as, pinecone):
    _upload(client, "sales", login_as("carol"))
    _upload(client, "engineering", _eng_admin_cookie())
    sales_key = client.post("/api/t/sales/keys", json={"name": "d", "scopes": ["retrieval"]},
                            cookies=login_as("carol")).json()["token"]
    eng_key = client.post("/api/t/engineering/keys", json={"name": "d", "scopes": ["retrieval", "chat"]},
                          cookies=_eng_admin_cookie()).json()["token"]
    dave = login_as("dave")
    dify = {"retrieval_setting": {"top_k": 10, "score_threshold": 0.0}}
    first_b_request = len(pinecone.requests)

    for marker in MARKERS:
        # Tenant B's own routes: its search, its chat and its Dify endpoint, with session and key.
        for creds in ({"cookies": dave}, {"headers": {"Authorization": f"Bearer {eng_key}"}}):
            r = client.post("/api/t/engineering/search", json={"query": marker, "top_k": 20}, **creds)
            results = r.json()["results"]
            assert r.status_code == 200 and results, r.text  # engineering has documents...
            assert "BLUEHERON" not in str(results)  # ...but never sales' ones
        r = client.post("/api/t/engineering/chat", json={"assistant": "eng-assistant",
                                                         "message": f"What is {marker}?"}, cookies=dave)
        assert r.status_code == 200 and "BLUEHERON" not in str(r.json()["citations"])
        for kid in ("sales/default", "default"):
            r = client.post("/api/t/engineering/dify/retrieval", json={"knowledge_id": kid, "query": marker, **dify},
                            headers={"Authorization": f"Bearer {eng_key}"})
            assert "BLUEHERON" not in r.text
        assert r.status_code == 200  # its own "default" kb exists
        # B's key on A's Dify URL; B's session with a forged X-Tenant-ID either way.
        r = client.post("/api/t/sales/dify/retrieval", json={"knowledge_id": "sales/default", "query": marker,
                                                             **dify}, headers={"Authorization": f"Bearer {eng_key}"})
        assert (r.status_code, r.json()["error_code"]) == (403, 1002) and "BLUEHERON" not in r.text
        for url_tenant, header in (("sales", "sales"), ("engineering", "sales"), ("sales", "engineering")):
            r = client.post(f"/api/t/{url_tenant}/search", json={"query": marker}, cookies=dave,
                            headers={"X-Tenant-ID": header})
            assert r.status_code == 403 and "BLUEHERON" not in r.text

    if pinecone.requests:  # Pinecone: every data-plane call made for B named B's namespace
        for req in pinecone.requests[first_b_request:]:
            ns = req["body"].get("namespace") if req["method"] == "POST" else req["query"].get("namespace")
            assert req["path"] == "/describe_index_stats" or ns == "engineering", req
        assert all(v["metadata"]["text"].find("BLUEHERON") < 0 for v in pinecone.namespaces["engineering"].values())

    # Tenant A finds every marker through the same paths.
    alice = login_as("alice")
    for marker, question in QUESTIONS.items():
        r = client.post("/api/t/sales/search", json={"query": question, "top_k": 5}, cookies=alice)
        assert any(marker in x["text"] for x in r.json()["results"]), (marker, r.text)
        r = client.post("/api/t/sales/dify/retrieval", json={"knowledge_id": "sales/default", "query": question,
                                                             **dify}, headers={"Authorization": f"Bearer {sales_key}"})
        assert any(marker in rec["content"] for rec in r.json()["records"]), marker
    # and B asking the very same questions gets none of it
    for question in QUESTIONS.values():
        r = client.post("/api/t/engineering/search", json={"query": question, "top_k": 20}, cookies=dave)
        assert r.status_code == 200 and "BLUEHERON" not in str(r.json()["results"])
