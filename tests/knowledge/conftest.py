"""Knowledge-base fixtures: principals, waiting for ingestion, the fake Pinecone data plane."""

from __future__ import annotations

import time

import pytest

from backend.auth.principal import MEMBER, TENANT_ADMIN, Principal
from tests.knowledge.pinecone_server import FakePinecone


def admin_of(tenant: str) -> Principal:
    return Principal(subject=f"{tenant}-admin", name="Admin", tenants={tenant: frozenset({MEMBER, TENANT_ADMIN})})


def member_of(*tenants: str) -> Principal:
    return Principal(subject="member", name="Member", tenants={t: frozenset({MEMBER}) for t in tenants})


def wait_documents(knowledge, principal: Principal, tenant: str, ids: list[str], timeout: float = 180) -> list[dict]:
    """Poll until every document is ready or failed (the in-process worker thread does the work)."""
    deadline = time.monotonic() + timeout
    while True:
        docs = [knowledge.get_document(principal, tenant, i) for i in ids]
        if all(d["status"] in ("ready", "failed") for d in docs):
            return docs
        if time.monotonic() > deadline:
            raise AssertionError(f"ingestion did not finish: {[(d['id'], d['status']) for d in docs]}")
        time.sleep(0.2)


@pytest.fixture
def pinecone():
    server = FakePinecone()
    yield server
    server.close()
