"""The PostgreSQL store (pgvector + full-text search) on a real PostgreSQL 16 with pgvector (pgserver): its keyword
half, tenant isolation with identical data, document filters, deletes, several dimensions, the error when the
server has no pgvector, the default on PostgreSQL, and a served app on it end to end. The shared contract runs in
test_stores.py and the API-level isolation in test_isolation_stores.py, both parametrised with pgvector."""

from __future__ import annotations

import math
import re
import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa

from backend.errors import Unavailable
from backend.knowledge.retrieval import Retrieval
from backend.knowledge.stores import make_store
from backend.knowledge.stores.base import ChunkRecord, TenantStore, chunk_id
from backend.knowledge.stores.pgvector import TABLE, PgvectorStore, _partition, _scoped, keyword_query
from backend.knowledge.stores.sqlite_vec import SqliteVecStore
from tests.api.test_documents import CORPUS, wait_ready
from tests.conftest import start_server, stop_server


def _unit(seed: int, dim: int = 16) -> list[float]:
    v = [math.sin(seed * 7.3 + k * 1.7) for k in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _record(doc: str, i: int, vector: list[float], text: str, title: str | None = None) -> ChunkRecord:
    title = title or f"Doc {doc}"
    return ChunkRecord(id=chunk_id(doc, i), document_id=doc, kb="default", chunk_index=i, title=title, text=text,
                       section=None, page=None, vector=vector, keyword_text=f"{title}\n{text}")


@pytest.fixture
def store(pgvector_url):
    s = PgvectorStore(pgvector_url)
    yield s
    s.close()


def test_the_keyword_half_finds_a_passage_only_its_rare_word_names(store):
    query_vector = _unit(1)
    far = [-x for x in query_vector]  # the least similar vector there is
    records = [_record("manual", i, _unit(100 + i), f"General guidance on travel policy, section {i}.")
               for i in range(30)]
    records.append(_record("manual", 30, far, "The escalation contact for outages is codenamed QUOKKAFIRE."))
    store.upsert("sales", records)

    hits = store.keyword("sales", "Who is QUOKKAFIRE?", top_k=5)
    assert [h.id for h in hits] == ["manual:30"]  # exactly the passage with the word, nothing else matches
    # English stemming, as the embedded store's porter tokenizer: "outage" finds "outages"
    assert [h.id for h in store.keyword("sales", "outage contact", top_k=5)] == ["manual:30"]

    retrieval = Retrieval(embedder=None, candidates=5)  # type: ignore[arg-type]  # the vector is given
    handle = TenantStore(store, "sales")
    dense = retrieval.search_vector(handle, "Who is QUOKKAFIRE?", query_vector, top_k=5, mode="dense")
    hybrid = retrieval.search_vector(handle, "Who is QUOKKAFIRE?", query_vector, top_k=5, mode="hybrid")
    assert "manual:30" not in {h.id for h in dense}  # the vectors alone never reach it...
    assert "manual:30" in {h.id for h in hybrid}  # ...the fused keyword half does
    found = next(h for h in hybrid if h.id == "manual:30")
    assert found.score == 0.0  # reported as its cosine similarity (-1, clamped), like the embedded store

    # Any text is data: tsquery operators, quotes and SQL are matched as words, never as syntax.
    for text in ('" OR 1=1 --', "!!! & | <-> :*", "'; DROP TABLE kb_chunk_vector; --", "what is the"):
        assert store.keyword("sales", text, top_k=5) == []
    assert store.count("sales") == 31
    assert keyword_query("what is the") is None


def test_one_tenant_never_gets_anothers_chunk_even_when_identical(store, pgvector_url):
    vector = _unit(3)
    same_text = "Refunds above 500 EUR need the ZEBRACOIN approval."
    store.upsert("sales", [_record("d1", 0, vector, same_text, title="Sales copy")])
    store.upsert("engineering", [_record("d1", 0, vector, same_text, title="Engineering copy")])  # same id too

    for tenant, title in (("sales", "Sales copy"), ("engineering", "Engineering copy")):
        assert [h.title for h in store.query(tenant, vector, top_k=10)] == [title]
        assert [h.title for h in store.keyword(tenant, "ZEBRACOIN approval", top_k=10)] == [title]
        assert [h.title for h in store.query(tenant, vector, top_k=10, document_ids={"d1"})] == [title]
    assert store.query("finance", vector, top_k=10) == [] and store.keyword("finance", "ZEBRACOIN", top_k=5) == []

    store.delete("sales", ["d1:0"])
    assert store.count("sales") == 0 and store.count("engineering") == 1
    assert store.similarity("sales", vector, ["d1:0"]) == {}
    assert store.similarity("engineering", vector, ["d1:0"]) == {"d1:0": pytest.approx(1.0, abs=1e-6)}

    # Each tenant has its own partition: a tenant's query reads that one only (the others are pruned).
    engine = sa.create_engine(pgvector_url)
    with engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.execute(sa.text(
            f"EXPLAIN SELECT id FROM {TABLE} WHERE tenant = :t"), {"t": "engineering"}))
        partitions = conn.execute(sa.text("SELECT count(*) FROM pg_inherits WHERE inhparent = :t ::regclass"),
                                  {"t": TABLE}).scalar_one()
    engine.dispose()
    assert partitions == 2 and set(re.findall(rf" on ({TABLE}_[0-9a-f]{{16}})", plan)) == {_partition("engineering")}


def test_every_statement_names_the_tenant(store):
    with pytest.raises(AssertionError):
        _scoped(f"SELECT id FROM {TABLE}")
    for bad in ("../sales", "sales' OR '1'='1", "", "Sales"):
        with pytest.raises(ValueError):
            store.query(bad, _unit(1), top_k=1)
        with pytest.raises(ValueError):
            store.upsert(bad, [_record("d", 0, _unit(1), "x")])


def test_document_filters_are_exact(store):
    query_vector = _unit(5)
    near = [_record("big", i, [x + 0.01 * math.sin(i + k) for k, x in enumerate(query_vector)], f"near {i}")
            for i in range(120)]
    far = [_record("small", i, [-x for x in _unit(5 + i)], f"far {i}") for i in range(3)]
    store.upsert("sales", near + far)

    # Unfiltered: the nearest chunks, all from "big"; more than the index's default candidate list when asked.
    assert {h.document_id for h in store.query("sales", query_vector, top_k=10)} == {"big"}
    assert len(store.query("sales", query_vector, top_k=100)) == 100
    # Filtered to a document whose chunks are all far away: every one of them, nearest first.
    hits = store.query("sales", query_vector, top_k=5, document_ids={"small"})
    assert sorted(h.id for h in hits) == ["small:0", "small:1", "small:2"]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.query("sales", query_vector, top_k=5, document_ids=set()) == []
    assert store.query("sales", query_vector, top_k=5, document_ids={"nope"}) == []
    # keyword: "near" and "far" passages both match "near far"; the filter keeps one document's.
    assert {h.document_id for h in store.keyword("sales", "near far", top_k=200, document_ids={"small"})} == {"small"}
    assert len(store.keyword("sales", "near far", top_k=200, document_ids={"big", "small"})) == 123
    # similarity: only the ids asked for, only the tenant's
    sims = store.similarity("sales", query_vector, ["small:1", "big:0", "missing:0"])
    assert set(sims) == {"small:1", "big:0"} and sims["big:0"] > 0.99 and sims["small:1"] < 0


def test_delete_removes_vectors_and_text(store, pgvector_url):
    store.upsert("sales", [_record("d1", i, _unit(i), f"PELICANBAY clause {i}") for i in range(4)]
                 + [_record("d2", 0, _unit(9), "PELICANBAY summary")])
    assert len(store.keyword("sales", "PELICANBAY", top_k=10)) == 5
    store.delete("sales", [chunk_id("d1", i) for i in range(6)])
    assert store.count("sales", "d1") == 0 and store.count("sales") == store.vector_count("sales") == 1
    assert [h.id for h in store.keyword("sales", "PELICANBAY", top_k=10)] == ["d2:0"]
    assert [h.id for h in store.query("sales", _unit(0), top_k=10)] == ["d2:0"]
    engine = sa.create_engine(pgvector_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id FROM {TABLE} WHERE text LIKE '%clause%'")).all()
    engine.dispose()
    assert rows == []  # no vector, no text, no tsvector left behind: they were one row


def test_several_dimensions_live_side_by_side(store):
    store.upsert("sales", [_record("small", 0, _unit(1, 8), "eight")] + [_record("large", 0, _unit(1, 32), "32")])
    assert [h.id for h in store.query("sales", _unit(1, 8), top_k=5)] == ["small:0"]
    assert [h.id for h in store.query("sales", _unit(1, 32), top_k=5)] == ["large:0"]
    assert set(store.similarity("sales", _unit(1, 32), ["small:0", "large:0"])) == {"large:0"}


def test_replicas_creating_the_schema_at_once_do_not_collide(pgvector_url):
    stores = [PgvectorStore(pgvector_url) for _ in range(4)]
    errors: list[BaseException] = []

    def first_use(i: int) -> None:
        try:
            stores[i].upsert(["sales", "engineering"][i % 2], [_record(f"d{i}", 0, _unit(i), f"text {i}")])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert stores[0].count("sales") == 2 and stores[0].count("engineering") == 2
    for s in stores:
        s.close()


@pytest.mark.postgres
def test_a_server_without_pgvector_is_named_with_the_fix(postgres_url):
    store = PgvectorStore(postgres_url)  # the machine's PostgreSQL 15 has no pgvector
    with pytest.raises(Unavailable) as info:
        store.ping()
    message = info.value.message
    assert "does not have pgvector" in message and "CREATE EXTENSION vector" in message
    assert "VECTOR_STORE=sqlite" in message and info.value.code == "vector_store_unavailable"
    store.close()


def test_a_role_that_may_not_create_the_extension_is_told_so(pgvector_url):
    role = f"atrium_app_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pgvector_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"GRANT CREATE ON SCHEMA public TO {role}"))
    store = PgvectorStore(pgvector_url.replace("://postgres:@", f"://{role}:@", 1))
    try:
        with pytest.raises(Unavailable) as info:
            store.ping()
        assert "may not create it" in info.value.message and "superuser" in info.value.message
        with admin.connect() as conn:  # once an administrator has created it, the same role works
            conn.execute(sa.text("CREATE EXTENSION vector"))
        store.upsert("sales", [_record("d1", 0, _unit(1), "works now")])
        assert store.count("sales") == 1
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def test_postgresql_defaults_to_pgvector(make_settings):
    assert make_settings().vector_store == "sqlite"
    assert make_settings(DATABASE_URL="postgresql://a@db.internal/atrium").vector_store == "pgvector"
    assert make_settings(DATABASE_URL="postgres://a@db.internal/atrium", VECTOR_STORE="sqlite").vector_store == "sqlite"
    assert make_settings(DATABASE_URL="sqlite:///x.db").vector_store == "sqlite"
    assert isinstance(make_store(make_settings(DATABASE_URL="postgresql://a@db.internal/atrium")), PgvectorStore)
    assert isinstance(make_store(make_settings()), SqliteVecStore)
    with pytest.raises(Unavailable) as info:
        make_store(make_settings(VECTOR_STORE="pgvector"))
    assert "set DATABASE_URL" in info.value.message


@pytest.mark.slow
def test_served_app_on_postgresql_finds_an_uploaded_document(tmp_path, pgvector_url, redis_url):
    # VECTOR_STORE unset: pgvector by default (PostgreSQL's start-up checks also want Redis)
    server = start_server(tmp_path, {"DATABASE_URL": pgvector_url, "REDIS_URL": redis_url,
                                     "CHAINLIT_AUTH_SECRET": "pgvector-test-" + "s" * 40})
    try:
        cookies = server.login("carol")
        with httpx.Client(base_url=server.url, cookies=cookies, timeout=60) as client:
            assert client.get("/readyz").status_code == 200
            path = CORPUS / "sales" / "pricing-rules.md"
            r = client.post("/api/t/sales/documents", files=[("files", (path.name, path.read_bytes(),
                                                                        "text/markdown"))])
            assert r.status_code == 202, r.text
            docs = wait_ready(client, "sales", [d["id"] for d in r.json()["documents"]])
            assert docs[0]["status"] == "ready", docs
            r = client.post("/api/t/sales/search", json={"query": "Who approves a discount above 20%?", "top_k": 5})
            assert r.status_code == 200 and r.json()["results"], r.text
            assert {x["document_id"] for x in r.json()["results"]} == {docs[0]["id"]}
        # The vectors are in the shared database (not in a file of this pod's data dir).
        engine = sa.create_engine(pgvector_url)
        with engine.connect() as conn:
            stored = conn.execute(sa.text(f"SELECT count(*) FROM {TABLE} WHERE tenant = 'sales'")).scalar_one()
        engine.dispose()
        assert stored == docs[0]["chunks"] > 0
        assert not (server.data_dir / "vectors.db").exists()
    finally:
        stop_server(server)
