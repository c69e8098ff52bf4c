"""The chat of a process that serves deployment group `default` (sales, engineering), not `regulated` (finance),
driven like the browser does: maria (sales and finance) is offered the sales assistants only and told, in a toast
and in the assistants' descriptions, where her finance assistants are; finance's profile forged on the socket is
refused (audited, no model call); her finance conversation is neither listed nor reopened (audited); fiona
(finance only) is told where to go instead of an empty chat."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from tests.chainlit_client import ChainlitSession
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

URL = "https://finance.atrium.example.com"
WHERE = f"Your Finance assistants are at {URL}."


@pytest.fixture(scope="module")
def default_group(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("group-default"), {"ATRIUM_DEPLOYMENT_GROUPS": "default"})
    yield server
    stop_server(server)


def _profiles(server, cookies) -> list[dict]:
    return httpx.get(f"{server.url}/chat/project/settings", cookies=cookies,
                     params={"language": "en-US"}).json()["chatProfiles"]


def _denials(server, subject: str) -> list[dict]:
    return server.rows("select * from audit_event where kind = 'denied' and subject = :s order by id", s=subject)


def test_the_process_says_which_group_it_serves(default_group):
    assert httpx.get(f"{default_group.url}/healthz").json()["deployment_groups"] == ["default"]


async def test_a_person_in_two_groups_gets_this_groups_assistants_and_where_the_others_are(default_group):
    maria = default_group.login("maria")
    profiles = _profiles(default_group, maria)
    assert {p["name"] for p in profiles} == {"sales/sales-assistant", "sales/deal-desk"}
    assert all(WHERE in p["markdown_description"] for p in profiles)
    async with ChainlitSession(default_group.url, maria, chat_profile="sales/sales-assistant") as chat:
        await asyncio.sleep(0.5)
        toasts = [d for n, d in chat.events if n == "toast"]
        greeting = [d for n, d in chat.events if n == "new_message" and d.get("type") != "run"]
        reply = await chat.ask("Hello! In one sentence, what can you help me with?")
    assert [t["message"] for t in toasts] == [WHERE] and toasts[0]["type"] == "info"
    assert greeting == []  # a toast, not a message: the assistant's starters stay on the empty chat
    assert reply.tokens and reply.text.strip()  # sales works as ever


async def test_a_forged_finance_profile_is_refused_and_audited(default_group):
    maria = default_group.login("maria")
    turns = len(default_group.rows("select id from chat_turn"))
    before = len(_denials(default_group, "maria"))
    async with ChainlitSession(default_group.url, maria, chat_profile="finance/finance-assistant") as chat:
        reply = await chat.ask("What is the daily meal limit?")
    assert reply.tokens == [] and WHERE in reply.text
    assert len(default_group.rows("select id from chat_turn")) == turns  # no model call, no turn
    new = _denials(default_group, "maria")[before:]
    assert [(d["tenant"], d["reason"], d["status"]) for d in new] == [("finance", "served_elsewhere", 421)]


async def test_a_finance_conversation_is_not_listed_nor_reopened_here(default_group):
    maria = default_group.login("maria")
    thread_id = str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy stores a DateTime on SQLite
    # Written where finance is served (one database for every group): maria's conversation with its assistant.
    engine = sa.create_engine(f"sqlite:///{default_group.data_dir / 'atrium.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "insert into conversation (id, tenant, subject, assistant, label, title, deleted, created_at, "
                "updated_at) values (:i, 'finance', 'maria', 'finance-assistant', 'production', 'Meal limits', "
                "0, :t, :t)"), {"i": thread_id, "t": now})
    finally:
        engine.dispose()
    threads = httpx.post(f"{default_group.url}/chat/project/threads", cookies=maria,
                         json={"pagination": {"first": 50}, "filter": {}}).json()["data"]
    assert thread_id not in {t["id"] for t in threads}
    before = len(_denials(default_group, "maria"))
    r = httpx.get(f"{default_group.url}/chat/project/thread/{thread_id}", cookies=maria)
    assert r.status_code == 404 and "Meal limits" not in r.text
    async with ChainlitSession(default_group.url, maria, thread_id=thread_id,
                               chat_profile="sales/sales-assistant") as look:
        await asyncio.sleep(0.5)
        notices = [d.get("output") or "" for n, d in look.events if n == "new_message"]
    assert any("This conversation isn't available" in t for t in notices), look.events
    assert not any(n == "resume_thread" for n, _ in look.events)
    new = _denials(default_group, "maria")[before:]
    assert new and {(d["tenant"], d["reason"]) for d in new} == {("finance", "served_elsewhere")}


async def test_a_person_whose_departments_are_all_elsewhere_is_told_where(default_group):
    fiona = default_group.login("fiona")
    assert _profiles(default_group, fiona) == []
    async with ChainlitSession(default_group.url, fiona) as chat:
        await asyncio.sleep(0.5)
        greeting = "\n".join(d.get("output") or "" for n, d in chat.events if n == "new_message")
        reply = await chat.ask("hello")
    assert WHERE in greeting and "no access" not in greeting.lower()
    assert WHERE in reply.text and reply.tokens == []
