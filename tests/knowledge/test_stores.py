"""All vector stores through the same interface: namespaces isolate, upserts are idempotent, deletes
are complete; the Pinecone adapter speaks the data-plane protocol (checked on the wire)."""

from __future__ import annotations

import math

import pytest

from backend.errors import UpstreamError
from backend.knowledge.stores.base import ChunkRecord, chunk_id
from backend.knowledge.stores.pgvector import PgvectorStore
from backend.knowledge.stores.pinecone import PineconeStore
from backend.knowledge.stores.sqlite_vec import SqliteVecStore, fts_query


def _unit(i: int, dim: int = 8) -> list[float]:
    v = [math.sin(i * (k + 1)) + (1.0 if k == i % dim else 0.0) for k in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _records(doc: str, n: int, words: str = "alpha", dim: int = 8) -> list[ChunkRecord]:
    return [ChunkRecord(id=chunk_id(doc, i), document_id=doc, kb="default", chunk_index=i, title=f"Doc {doc}",
                        text=f"{words} passage {i}", section="S", page=i + 1 if i % 2 else None,
                        vector=_unit(i, dim), keyword_text=f"Doc {doc}\n{words} passage {i}") for i in range(n)]


@pytest.fixture(params=["sqlite", "pinecone", "pgvector"])
def store(request, tmp_path, pinecone):
    if request.param == "sqlite":
        s = SqliteVecStore(tmp_path / "vectors.db")
    elif request.param == "pgvector":
        s = PgvectorStore(request.getfixturevalue("pgvector_url"))
    else:
        pinecone.dimension = 8
        s = PineconeStore(api_key=pinecone.api_key, host=pinecone.host)
    yield s
    s.close()


def test_namespaces_isolate_and_upserts_are_idempotent(store):
    store.upsert("sales", _records("d1", 5, "BLUEHERON"))
    store.upsert("sales", _records("d1", 5, "BLUEHERON"))  # a resumed batch: overwrite, never duplicate
    store.upsert("engineering", _records("e1", 3, "REDFALCON"))
    assert store.count("sales") == 5 and store.count("engineering") == 3
    assert store.count("sales", "d1") == 5 and store.count("engineering", "d1") == 0
    hits = store.query("engineering", _unit(1), top_k=10)
    assert {h.document_id for h in hits} == {"e1"} and all("REDFALCON" in h.text for h in hits)
    hits = store.query("sales", _unit(2), top_k=3)
    assert hits[0].id == "d1:2" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert (hits[0].title, hits[0].section, hits[0].kb, hits[0].chunk_index) == ("Doc d1", "S", "default", 2)
    assert store.query("sales", _unit(1), top_k=3, document_ids={"e1"}) == []
    assert store.query("marketing", _unit(1), top_k=3) == []


def test_delete_removes_every_vector(store):
    store.upsert("sales", _records("d1", 4) + _records("d2", 2))
    store.delete("sales", [chunk_id("d1", i) for i in range(10)])  # more ids than exist is fine
    assert store.count("sales") == 2 and store.count("sales", "d1") == 0
    assert {h.document_id for h in store.query("sales", _unit(0), top_k=10)} == {"d2"}


def test_invalid_namespace_is_refused(store):
    with pytest.raises(ValueError):
        store.query("../other", _unit(0), top_k=1)


def test_sqlite_keyword_search_stays_in_the_tenant(tmp_path):
    store = SqliteVecStore(tmp_path / "v.db")
    store.upsert("sales", _records("d1", 3, "blueheron pricing"))
    store.upsert("engineering", _records("e1", 3, "blueheron runbook"))
    hits = store.keyword("sales", "What does BLUEHERON cost?", top_k=10)
    assert hits and {h.document_id for h in hits} == {"d1"}
    assert store.keyword("sales", '" OR 1=1 -- NEAR(*)', top_k=5) == []  # FTS syntax never gets through
    assert store.vector_count("sales") == store.count("sales") == 3
    assert fts_query("what is the") is None
    store.close()


def test_pinecone_wire_protocol_names_the_namespace_every_time(pinecone):
    pinecone.dimension = 8
    store = PineconeStore(api_key=pinecone.api_key, host=pinecone.host)
    store.upsert("sales", _records("d1", 3))
    store.query("sales", _unit(1), top_k=2, document_ids={"d1"})
    store.count("sales", "d1")
    store.delete("sales", ["d1:0"])
    store.count("sales")
    paths = [r["path"] for r in pinecone.requests]
    assert paths == ["/vectors/upsert", "/query", "/vectors/list", "/vectors/delete", "/describe_index_stats"]
    assert all(r["api_key"] == pinecone.api_key for r in pinecone.requests)
    for r in pinecone.requests:
        if r["path"] == "/describe_index_stats":
            continue  # index-wide by protocol; the adapter reads its own namespace from the answer
        ns = r["query"].get("namespace") if r["method"] == "GET" else r["body"].get("namespace")
        assert ns == "sales", r
    upsert = pinecone.requests[0]["body"]["vectors"][1]
    assert upsert["id"] == "d1:1"
    assert upsert["metadata"] == {"document_id": "d1", "kb": "default", "chunk_index": 1, "title": "Doc d1",
                                  "text": "alpha passage 1", "page": 2, "section": "S"}
    assert "page" not in pinecone.requests[0]["body"]["vectors"][0]["metadata"]  # no nulls sent
    assert pinecone.requests[1]["body"]["filter"] == {"document_id": {"$in": ["d1"]}}
    assert pinecone.requests[1]["body"]["topK"] == 2 and pinecone.requests[1]["body"]["includeMetadata"] is True
    assert pinecone.requests[3]["body"]["ids"] == ["d1:0"]
    assert store.dimension() == 8


def test_pinecone_errors_are_named(pinecone):
    store = PineconeStore(api_key="wrong-key", host=pinecone.host)
    with pytest.raises(UpstreamError) as info:
        store.query("sales", _unit(0), top_k=1)
    assert "Pinecone query failed" in info.value.message
