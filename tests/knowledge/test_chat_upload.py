"""Attaching files in the chat (Chainlit spontaneous upload) adds them to the tenant's knowledge base —
for tenant admins only — with a status line per file; then the chat answers from them, with citations."""

from __future__ import annotations

import httpx
import pytest

from tests.chainlit_client import ChainlitSession
from tests.conftest import REPO, start_server, stop_server

pytestmark = pytest.mark.slow
PRICING = (REPO / "demo" / "corpus" / "sales" / "pricing-rules.md").read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("upload"))
    yield s
    stop_server(s)


async def test_admin_attachments_are_ingested_member_attachments_refused(server):
    alice = server.login("alice")
    async with ChainlitSession(server.url, alice, chat_profile="sales/sales-assistant") as chat:
        # Refused by the upload route itself (the paperclip is hidden for her, but the route was open to all).
        refused = await chat.upload("pricing-rules.md", PRICING, "text/markdown")
    assert refused.status_code == 403 and "tenant_admin role" in refused.json()["detail"]
    docs = httpx.get(f"{server.url}/api/t/sales/documents", cookies=alice).json()["documents"]
    assert docs == []

    carol = server.login("carol")
    async with ChainlitSession(server.url, carol, chat_profile="sales/sales-assistant", timeout=300) as chat:
        reply = await chat.ask("", files=[
            ("pricing-rules.md", PRICING, "text/markdown"),
            ("photo.md", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "text/markdown")])
        assert "✅ **pricing-rules.md** — ready" in reply.text, reply.text
        assert "❌ **photo.md** — this file is a PNG image" in reply.text
        reply = await chat.ask("Who must approve a discount of more than 20%?")
    assert any("Northwind Cloud Pricing Rules" in (e.get("name") or "") for e in reply.elements), reply.elements
    assert "Sources: [1] Northwind Cloud Pricing Rules" in reply.text
    docs = httpx.get(f"{server.url}/api/t/sales/documents", cookies=carol).json()["documents"]
    assert [(d["filename"], d["status"], d["created_by"]) for d in docs] == [("pricing-rules.md", "ready", "carol")]
