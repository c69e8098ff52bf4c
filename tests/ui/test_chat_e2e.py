"""A real client drives the served app: HTTP login, Chainlit socket.io, a streamed local-model answer."""

from __future__ import annotations

import httpx
import pytest

from tests.chainlit_client import ChainlitSession

pytestmark = pytest.mark.slow


def _turns(server) -> list[dict]:
    return server.rows("select * from chat_turn order by id")


def _audit(server, kind: str) -> list[dict]:
    return server.rows("select * from audit_event where kind = :k order by id", k=kind)


def test_served_app_pages(live_server):
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200
    assert httpx.get(f"{live_server.url}/readyz").status_code == 200
    r = httpx.get(f"{live_server.url}/", follow_redirects=True)
    assert r.status_code == 200 and r.url.path.startswith("/chat")
    config = httpx.get(f"{live_server.url}/chat/auth/config").json()
    assert config["passwordAuth"] is True and config["requireLogin"] is True


def test_wrong_password_is_refused_and_audited(live_server):
    r = httpx.post(f"{live_server.url}/chat/login", data={"username": "alice", "password": "nope"})
    assert r.status_code == 401 and r.json() == {"detail": "Wrong username or password."}
    assert any(e["subject"] == "alice" and e["reason"] == "bad_password" for e in _audit(live_server, "denied"))


async def test_member_gets_a_streamed_answer_from_the_local_model(live_server):
    cookies = live_server.login("alice")
    profiles = httpx.get(f"{live_server.url}/chat/project/settings", cookies=cookies,
                         params={"language": "en-US"}).json()["chatProfiles"]
    assert {p["name"] for p in profiles} == {"sales/sales-assistant", "sales/deal-desk"}

    before = len(_turns(live_server))
    async with ChainlitSession(live_server.url, cookies, chat_profile="sales/sales-assistant") as chat:
        reply = await chat.ask("Hello! In one sentence, what can you help me with?")
    assert len(reply.tokens) > 1, "the answer must arrive as a stream of tokens"
    assert "".join(reply.tokens).strip(), reply
    assert reply.text.strip()

    turns = _turns(live_server)[before:]
    assert len(turns) == 1
    turn = turns[0]
    assert (turn["tenant"], turn["subject"], turn["assistant"]) == ("sales", "alice", "sales-assistant")
    assert turn["prompt_version"] == 1 and turn["model"] == "local/smollm2"
    assert turn["outcome"] == "ok" and turn["completion_tokens"] > 0 and turn["cost_usd"] == 0


async def test_other_tenant_cannot_see_or_forge_the_profile(live_server):
    cookies = live_server.login("erin")  # engineering only
    profiles = httpx.get(f"{live_server.url}/chat/project/settings", cookies=cookies,
                         params={"language": "en-US"}).json()["chatProfiles"]
    names = {p["name"] for p in profiles}
    assert names == {"engineering/eng-assistant"}

    before = len(_turns(live_server))
    denied_before = len(_audit(live_server, "denied"))
    # Forge the socket payload: ask for the sales assistant anyway.
    async with ChainlitSession(live_server.url, cookies, chat_profile="sales/sales-assistant") as chat:
        reply = await chat.ask("What are the sales discount rules?")
    assert reply.tokens == []
    assert "not a member" in reply.text.lower() or "not allowed" in reply.text.lower()
    assert _turns(live_server)[before:] == [], "a refused profile never reaches the pipeline"
    denials = _audit(live_server, "denied")[denied_before:]
    assert any(d["subject"] == "erin" and d["tenant"] == "sales" for d in denials)


def _greeting(chat) -> str:
    return "\n".join(d.get("output") or "" for n, d in chat.events if n == "new_message")


async def test_user_without_tenant_gets_a_clear_no_access_message_once(live_server):
    cookies = live_server.login("nobody")
    async with ChainlitSession(live_server.url, cookies) as chat:
        greeting = _greeting(chat)  # the chat's start says it at length
        first = await chat.ask("hello")
        second = await chat.ask("hello?")
    assert "no access" in greeting.lower() and "administrator" in greeting.lower()
    # Every message after it: a short reminder (not the same long text again), never a model call.
    for reply in (first, second):
        assert reply.text and reply.text not in greeting and len(reply.text) < len(greeting)
        assert "note at the top" in reply.text and reply.tokens == []
    assert first.text == second.text


async def test_platform_operator_is_pointed_to_the_operator_routes(live_server):
    cookies = live_server.login("root")
    async with ChainlitSession(live_server.url, cookies) as chat:
        greeting = _greeting(chat)
        reply = await chat.ask("hello")
    assert "platform operator" in greeting and "/api/admin/audit" in greeting
    assert "platform operator" in reply.text and "/api/admin/audit" not in reply.text
    assert reply.tokens == []


def test_only_those_who_may_add_documents_get_a_paperclip(live_server):
    """The paperclip is Chainlit's `spontaneous_file_upload` feature, switched off per chat profile."""
    def uploads(user: str, profile: str) -> bool:
        settings = httpx.get(f"{live_server.url}/chat/project/settings", cookies=live_server.login(user),
                             params={"language": "en-US", "chat_profile": profile}).json()
        return settings["features"]["spontaneous_file_upload"]["enabled"]

    assert uploads("carol", "sales/sales-assistant") is True  # a tenant admin
    assert uploads("alice", "sales/sales-assistant") is False
    assert uploads("bob", "sales/sales-assistant@staging") is False  # a prompt editor is not an admin


def test_nothing_outside_the_chat_serves_chainlits_assets(live_server):
    """The PDF worker route went with the PDF preview (attached files are not echoed back into the message: that
    served them from the upload folder); /assets is nobody's."""
    assert httpx.get(f"{live_server.url}/assets/index.html").status_code == 404
    assert httpx.get(f"{live_server.url}/assets/pdf.worker.min-x.mjs").status_code == 404


async def test_an_empty_file_is_refused_in_words(live_server):
    """Chainlit's upload route fails on an empty file (a 500 and "Upload failed"): a 400 that says why."""
    cookies = live_server.login("carol")
    errors_before = live_server.log_path.read_text(errors="replace").count("unhandled error")
    async with ChainlitSession(live_server.url, cookies, chat_profile="sales/sales-assistant") as chat:
        empty = await chat.upload("empty.txt", b"", "text/plain")
        fine = await chat.upload("note.txt", b"A note.", "text/plain")
    assert empty.status_code == 400 and empty.json() == {"detail": "it is empty — nothing to add"}
    assert fine.status_code == 200 and fine.json()["id"]
    assert live_server.log_path.read_text(errors="replace").count("unhandled error") == errors_before
