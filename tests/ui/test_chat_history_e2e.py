"""Chat history in the served app: Chainlit's own routes and socket, driven like the browser does. A user sees,
reopens, renames, rates and deletes only their own conversations; every attempt on someone else's is a 404
and an audited denial; a conversation is never shared, even when the share route is called."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from urllib.parse import unquote

import httpx
import pytest

from tests.chainlit_client import ChainlitSession
from tests.conftest import REPO, start_server, stop_server
from ui.chat_text import CUT_NOTE

pytestmark = pytest.mark.slow

QUESTION = "What is the maximum discount a rep can approve?"


def _threads(server, cookies) -> list[dict]:
    r = httpx.post(f"{server.url}/chat/project/threads", cookies=cookies,
                   json={"pagination": {"first": 20}, "filter": {}})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _denials(server, subject: str) -> list[dict]:
    return server.rows("select * from audit_event where kind = 'denied' and subject = :s and route = "
                       "'chat:conversation' order by id", s=subject)


async def test_history_is_the_owners_alone(live_server):
    alice, erin, bob = (live_server.login(u) for u in ("alice", "erin", "bob"))
    known = {t["id"] for t in _threads(live_server, alice)}
    async with ChainlitSession(live_server.url, alice, chat_profile="sales/sales-assistant") as chat:
        reply = await chat.ask(QUESTION)
    assert reply.text.strip()

    new = [t for t in _threads(live_server, alice) if t["id"] not in known]
    assert len(new) == 1 and new[0]["name"] == QUESTION  # the first message, until a model titles it
    thread_id = new[0]["id"]
    assert new[0]["metadata"] == {"chat_profile": "sales/sales-assistant"}
    thread = httpx.get(f"{live_server.url}/chat/project/thread/{thread_id}", cookies=alice).json()
    steps = [s for s in thread["steps"] if s["type"] != "run"]
    assert [s["type"] for s in steps] == ["user_message", "assistant_message"]
    assert steps[0]["output"] == QUESTION and steps[1]["output"] == reply.text
    # Chainlit's thumbs rate the answer's run (its parent); without the run a reopened answer has no buttons.
    answer_id = steps[1]["parentId"]
    assert [s["type"] for s in thread["steps"] if s["id"] == answer_id] == ["run"]

    # Another tenant's user (erin) and a colleague in the same tenant (bob) get nothing and change nothing.
    for name, cookies in (("erin", erin), ("bob", bob)):
        before = len(_denials(live_server, name))
        assert thread_id not in {t["id"] for t in _threads(live_server, cookies)}
        assert httpx.get(f"{live_server.url}/chat/project/thread/{thread_id}", cookies=cookies).status_code == 404
        r = httpx.put(f"{live_server.url}/chat/project/thread", cookies=cookies,
                      json={"threadId": thread_id, "name": "pwned"})
        assert r.status_code == 404
        r = httpx.request("DELETE", f"{live_server.url}/chat/project/thread", cookies=cookies,
                          json={"threadId": thread_id})
        assert r.status_code == 404
        # Chainlit does not check who rates a message: Atrium does.
        r = httpx.put(f"{live_server.url}/chat/feedback", cookies=cookies,
                      json={"feedback": {"forId": answer_id, "value": 0, "comment": "bad"}, "sessionId": "x"})
        assert r.status_code == 404 and "no message of yours" in r.text
        # Reopening it over the socket does not resume it.
        async with ChainlitSession(live_server.url, cookies, thread_id=thread_id) as other:
            assert "resume_thread" not in [n for n, _ in other.events]
        # One row per kind of attempt, named for what was attempted (the HTTP read and the socket's are one look;
        # Chainlit's author checks before its rename and delete routes are the rename and the delete), with the IP.
        rows = _denials(live_server, name)[before:]
        assert [(d["reason"], json.loads(d["detail"])["action"]) for d in rows] == [
            ("not_owner", "read"), ("not_owner", "rename"), ("not_owner", "delete"), ("not_owner", "feedback")]
        assert {d["ip"] for d in rows} == {"127.0.0.1"}
    row = live_server.rows("select title from conversation where id = :i", i=thread_id)[0]
    assert row["title"] == QUESTION
    assert live_server.rows("select feedback_value from conversation_step where id = :i",
                            i=answer_id)[0]["feedback_value"] is None

    # The owner rates, renames and reopens it; the follow-up is answered with the conversation as history.
    r = httpx.put(f"{live_server.url}/chat/feedback", cookies=alice,
                  json={"feedback": {"forId": answer_id, "value": 1, "comment": None}, "sessionId": "x"})
    assert r.status_code == 200 and r.json()["feedbackId"] == answer_id
    thread = httpx.get(f"{live_server.url}/chat/project/thread/{thread_id}", cookies=alice).json()
    assert [s["feedback"]["value"] for s in thread["steps"] if s["id"] == answer_id] == [1]
    # The sales prompt editors see the rated exchange, with the prompt version that answered (not who rated).
    r = httpx.put(f"{live_server.url}/chat/feedback", cookies=alice,
                  json={"feedback": {"forId": answer_id, "value": 0, "comment": "the limit is 15%"},
                        "sessionId": "x"})
    assert r.status_code == 200
    report = httpx.get(f"{live_server.url}/api/t/sales/feedback", cookies=bob).json()
    [item] = [i for i in report["items"] if i["answer"] == reply.text]
    assert (item["question"], item["value"], item["comment"]) == (QUESTION, 0, "the limit is 15%")
    assert (item["assistant"], item["prompt_version"], item["model"]) == ("sales-assistant", 1, "local/smollm2")
    assert "alice" not in str(item)
    assert {"assistant": "sales-assistant", "prompt_version": 1, "helpful": 0, "not_helpful": 1} in report["summary"]
    assert httpx.get(f"{live_server.url}/api/t/sales/feedback", cookies=alice).status_code == 403  # a member
    assert httpx.get(f"{live_server.url}/api/t/sales/feedback", cookies=erin).status_code == 403  # another tenant
    r = httpx.put(f"{live_server.url}/chat/project/thread", cookies=alice,
                  json={"threadId": thread_id, "name": "Discount limits"})
    assert r.status_code == 200
    assert [t["name"] for t in _threads(live_server, alice) if t["id"] == thread_id] == ["Discount limits"]

    turns_before = len(live_server.rows("select id from chat_turn"))
    async with ChainlitSession(live_server.url, alice, thread_id=thread_id) as chat:
        assert "resume_thread" in [n for n, _ in chat.events]
        await chat.ask("And above that?")
    turn = live_server.rows("select * from chat_turn")[turns_before:][0]
    assert (turn["tenant"], turn["assistant"]) == ("sales", "sales-assistant")
    assert "previous questions + this message" in turn["route_reason"]  # the resumed history was used
    thread = httpx.get(f"{live_server.url}/chat/project/thread/{thread_id}", cookies=alice).json()
    assert [s["type"] for s in thread["steps"] if s["type"] != "run"] == ["user_message", "assistant_message"] * 2
    assert thread["name"] == "Discount limits"

    # Sharing is not a thing: the routes are refused, nothing becomes readable through the share link.
    assert httpx.put(f"{live_server.url}/chat/project/thread/share", cookies=alice,
                     json={"threadId": thread_id, "isShared": True}).status_code == 404
    assert httpx.get(f"{live_server.url}/chat/project/share/{thread_id}", cookies=erin).status_code == 404

    r = httpx.request("DELETE", f"{live_server.url}/chat/project/thread", cookies=alice, json={"threadId": thread_id})
    assert r.status_code == 200
    assert thread_id not in {t["id"] for t in _threads(live_server, alice)}
    assert live_server.rows("select id from conversation_step where conversation_id = :i", i=thread_id) == []


async def test_a_forged_profile_leaves_no_history(live_server):
    erin = live_server.login("erin")
    known = {t["id"] for t in _threads(live_server, erin)}
    async with ChainlitSession(live_server.url, erin, chat_profile="sales/sales-assistant") as chat:
        reply = await chat.ask("What are the sales discount rules?")
    assert "not a member" in reply.text.lower() or "not allowed" in reply.text.lower()
    assert {t["id"] for t in _threads(live_server, erin)} == known
    assert live_server.rows("select id from conversation where subject = 'erin' and tenant = 'sales'") == []


async def test_a_message_over_the_limit_gets_a_clear_answer_not_a_model_call(live_server):
    turns = len(live_server.rows("select id from chat_turn"))
    replies = {}
    for user in ("alice", "carol"):
        async with ChainlitSession(live_server.url, live_server.login(user),
                                   chat_profile="sales/sales-assistant") as chat:
            replies[user] = await chat.ask("a" * 20_001)
    for reply in replies.values():
        assert "too long" in reply.text and "20,000" in reply.text and "20,001" in reply.text
        # A refusal is the turn's last word outside its run: no thumbs under it (nothing to rate about a prompt).
        [refusal] = [m for m in reply.messages if "too long" in (m.get("output") or "")]
        assert refusal["parentId"] is None
    # Advice each can follow: only a tenant admin can add a document to the knowledge base.
    assert "knowledge base" not in replies["alice"].text and "attach" not in replies["alice"].text
    assert "attach the text as a file" in replies["carol"].text
    assert len(live_server.rows("select id from chat_turn")) == turns


async def test_a_message_in_a_tab_whose_conversation_was_deleted_starts_a_new_chat(live_server):
    """Tab A shows a conversation that tab B deletes: what A sends next is answered and kept, in a new chat, and A
    is told so (before, the answer was paid for and lost)."""
    alice = live_server.login("alice")
    known = {t["id"] for t in _threads(live_server, alice)}
    async with ChainlitSession(live_server.url, alice, chat_profile="sales/sales-assistant") as tab_a:
        await tab_a.ask("Hello! What can you help me with?")
        [old] = [t["id"] for t in _threads(live_server, alice) if t["id"] not in known]
        r = httpx.request("DELETE", f"{live_server.url}/chat/project/thread", cookies=alice, json={"threadId": old})
        assert r.status_code == 200  # tab B
        reply = await tab_a.ask("And what is a discount?")
    assert "This conversation was deleted" in reply.text and "new chat" in reply.text
    [new] = [t for t in _threads(live_server, alice) if t["id"] not in known]
    assert new["id"] != old and new["name"] == "And what is a discount?"
    thread = httpx.get(f"{live_server.url}/chat/project/thread/{new['id']}", cookies=alice).json()
    steps = [(s["type"], s["output"]) for s in thread["steps"]]
    assert steps[0] == ("user_message", "And what is a discount?") and ("run", "") in steps
    answers = [o for t, o in steps if t == "assistant_message"]
    assert "This conversation was deleted" in answers[0] and answers[-1] in reply.text and len(answers) == 2
    # The browser is moved to the new conversation (its sidebar and current thread follow).
    assert {"interaction": "And what is a discount?", "thread_id": new["id"]} in [
        d for n, d in tab_a.events if n == "first_interaction"]
    assert live_server.rows("select id from conversation_step where conversation_id = :i", i=old) == []


async def test_a_stopped_answer_keeps_what_was_shown(live_server):
    erin = live_server.login("erin")
    known = {t["id"] for t in _threads(live_server, erin)}
    async with ChainlitSession(live_server.url, erin, chat_profile="engineering/eng-assistant") as chat:
        reply = await chat.ask("Hello! Please introduce yourself in a few sentences.", stop_after_tokens=4)
    shown = "".join(reply.tokens)
    assert shown.strip() and "Task manually stopped." in reply.text
    [thread_id] = [t["id"] for t in _threads(live_server, erin) if t["id"] not in known]
    thread = httpx.get(f"{live_server.url}/chat/project/thread/{thread_id}", cookies=erin).json()
    answers = [s["output"] for s in thread["steps"] if s["type"] == "assistant_message"]
    [kept] = [a for a in answers if a.endswith("_(stopped)_")]
    assert shown.strip() in kept, (kept, shown)  # (the first token comes with stream_start)
    # In its place: before Chainlit's "Task manually stopped." (its time is the answer's start).
    assert answers.index(kept) < answers.index("Task manually stopped.")
    assert live_server.rows("select outcome from chat_turn where subject = 'erin' order by id desc limit 1") == [
        {"outcome": "cancelled"}]


async def test_staging_conversations_are_marked_and_blank_names_are_refused(live_server):
    bob = live_server.login("bob")
    known = {t["id"] for t in _threads(live_server, bob)}
    async with ChainlitSession(live_server.url, bob, chat_profile="sales/sales-assistant@staging") as chat:
        await chat.ask("Hello from staging!")
    [thread] = [t for t in _threads(live_server, bob) if t["id"] not in known]
    assert thread["name"] == "Hello from staging! (staging)"
    # The rename dialog starts from the listed name: the mark is not stored as part of the title.
    r = httpx.put(f"{live_server.url}/chat/project/thread", cookies=bob,
                  json={"threadId": thread["id"], "name": "Staging tries (staging)"})
    assert r.status_code == 200
    assert live_server.rows("select title from conversation where id = :i", i=thread["id"]) == [
        {"title": "Staging tries"}]
    for blank in ("", "   ", " (staging)"):
        r = httpx.put(f"{live_server.url}/chat/project/thread", cookies=bob,
                      json={"threadId": thread["id"], "name": blank})
        assert r.status_code == 400 and "needs a name" in r.json()["detail"]
    assert [t["name"] for t in _threads(live_server, bob) if t["id"] == thread["id"]] == ["Staging tries (staging)"]


async def test_a_chat_left_without_a_message_leaves_no_history(live_server):
    """Opening the chat, a new chat or another assistant and leaving without typing stores nothing."""
    alice = live_server.login("alice")
    rows = len(live_server.rows("select id from conversation where subject = 'alice'"))
    known = {t["id"] for t in _threads(live_server, alice)}
    for profile in ("sales/sales-assistant", "sales/deal-desk", "sales/sales-assistant"):
        async with ChainlitSession(live_server.url, alice, chat_profile=profile) as chat:
            await asyncio.sleep(0.5)
        assert [n for n, _ in chat.events if n == "new_message"]  # the chat did start (its start step)
    await asyncio.sleep(1)  # Chainlit persists on disconnect
    assert len(live_server.rows("select id from conversation where subject = 'alice'")) == rows
    assert {t["id"] for t in _threads(live_server, alice)} == known


async def test_one_look_at_someone_elses_conversation_is_one_denial_and_a_notice(live_server):
    alice, carol = live_server.login("alice"), live_server.login("carol")
    async with ChainlitSession(live_server.url, alice, chat_profile="sales/sales-assistant") as chat:
        await chat.ask("Hello, what can you do?")
    [thread_id] = [r["id"] for r in live_server.rows(
        "select c.id from conversation c where c.subject = 'alice' and c.title = 'Hello, what can you do?'")]
    denied_before = len(_denials(live_server, "carol"))
    suspicious_before = len(live_server.rows("select id from audit_event where kind = 'suspicious_access'"))

    # What a page load of /chat/thread/<id> does, twice over: Chainlit's HTTP route and the socket's resume.
    assert httpx.get(f"{live_server.url}/chat/project/thread/{thread_id}", cookies=carol).status_code == 404
    async with ChainlitSession(live_server.url, carol, thread_id=thread_id,
                               chat_profile="sales/sales-assistant") as look:  # the browser sends its profile
        await asyncio.sleep(0.5)
        notices = [d.get("output") or "" for n, d in look.events if n == "new_message"]
        assert any("This conversation isn't available" in t for t in notices), look.events
        # She goes on in that chat: it is a conversation of her own, alice's is not touched.
        reply = await look.ask("What is a discount?")
    assert reply.text.strip()
    new = _denials(live_server, "carol")[denied_before:]
    assert len(new) == 1 and new[0]["reason"] == "not_owner", new
    assert len(live_server.rows("select id from audit_event where kind = 'suspicious_access'")) == suspicious_before
    mine = [t for t in _threads(live_server, carol) if t["name"] == "What is a discount?"]
    assert len(mine) == 1 and mine[0]["id"] != thread_id
    assert live_server.rows("select subject, title from conversation where id = :i", i=thread_id) == [
        {"subject": "alice", "title": "Hello, what can you do?"}]
    assert len(live_server.rows("select id from conversation_step where conversation_id = :i and "
                                "type = 'user_message'", i=thread_id)) == 1


# -- a server of its own, whose sales knowledge base these tests fill (and whose Deal Desk stops early) -------


PRICING = (REPO / "demo" / "corpus" / "sales" / "pricing-rules.md").read_bytes()


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("history-sources")
    prompts = tmp / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    deal_desk = prompts / "sales" / "deal-desk" / "v0001.md"
    # The model writes this assistant's answers (not the grounded mode, which quotes without a length limit), cut at 3.
    settings = "max_tokens: 3\nsignoff: '-- Deal Desk'\nanswer_mode: generative"
    deal_desk.write_text(re.sub(r"(?m)^max_tokens: \d+$", settings, deal_desk.read_text()))
    server = start_server(tmp, {"ATRIUM_PROMPTS_DIR": str(prompts)})
    yield server
    stop_server(server)


async def test_a_first_message_of_only_files_names_the_chat_after_them(docs_server):
    carol = docs_server.login("carol")
    known = {r["id"] for r in docs_server.rows("select id from conversation where subject = 'carol'")}
    async with ChainlitSession(docs_server.url, carol, chat_profile="sales/sales-assistant", timeout=300) as chat:
        await chat.ask("", files=[("pricing-rules.md", PRICING, "text/markdown")])
    [conversation] = [r for r in docs_server.rows("select id, title from conversation where subject = 'carol'")
                      if r["id"] not in known]
    assert conversation["title"] == "Uploaded pricing-rules.md"
    assert [t["name"] for t in _threads(docs_server, carol)
            if t["id"] == conversation["id"]] == ["Uploaded pricing-rules.md"]


def _pricing_in_the_knowledge_base(server) -> None:
    carol = server.login("carol")
    docs = httpx.get(f"{server.url}/api/t/sales/documents", cookies=carol).json()["documents"]
    if not docs:
        r = httpx.post(f"{server.url}/api/t/sales/documents", cookies=carol,
                       files={"file": ("pricing-rules.md", PRICING, "text/markdown")}, timeout=60)
        assert r.status_code == 202, r.text
    for _ in range(240):
        docs = httpx.get(f"{server.url}/api/t/sales/documents", cookies=carol).json()["documents"]
        if docs and all(d["status"] == "ready" for d in docs):
            return
        time.sleep(0.5)
    raise AssertionError(docs)


NOTE = ("note.txt", b"Our pricing note: the Zeta plan costs 99 dollars a month.", "text/plain")


async def test_a_note_sent_with_files_is_acknowledged_not_answered(docs_server):
    """"Please add this note" with a file is about the file: the upload's status is the reply, never an "I don't
    know ... ask an administrator to add the document" to the administrator who just added it."""
    turns = len(docs_server.rows("select id from chat_turn"))
    async with ChainlitSession(docs_server.url, docs_server.login("carol"), chat_profile="sales/sales-assistant",
                               timeout=300) as chat:
        added = await chat.ask("Please add this note", files=[NOTE])
    assert "note.txt" in added.text and "ready" in added.text and "Noted." in added.text
    assert "I don't know" not in added.text and "administrator" not in added.text
    async with ChainlitSession(docs_server.url, docs_server.login("alice"),
                               chat_profile="sales/sales-assistant") as chat:
        refused = await chat.upload(*NOTE)  # a member's file is refused by the upload route itself
    assert refused.status_code == 403 and "tenant_admin role" in refused.json()["detail"]
    assert len(docs_server.rows("select id from chat_turn")) == turns  # no model call
    # Status messages are the turn's last word: outside the run, so there are no thumbs under them.
    assert all(m["parentId"] is None for m in added.messages if m["type"] == "assistant_message")

    # A question sent with a file is answered (once the file is in the knowledge base).
    async with ChainlitSession(docs_server.url, docs_server.login("carol"), chat_profile="sales/sales-assistant",
                               timeout=300) as chat:
        asked = await chat.ask("What does the Zeta plan cost?", files=[NOTE])
    assert "ready" in asked.text and len(docs_server.rows("select id from chat_turn")) == turns + 1


async def test_a_reopened_answer_keeps_its_sources_and_only_for_its_owner(docs_server):
    _pricing_in_the_knowledge_base(docs_server)
    carol, alice = docs_server.login("carol"), docs_server.login("alice")
    known = {t["id"] for t in _threads(docs_server, carol)}
    async with ChainlitSession(docs_server.url, carol, chat_profile="sales/sales-assistant", timeout=300) as chat:
        reply = await chat.ask("Who must approve a discount of more than 20%?")
    [thread_id] = [t["id"] for t in _threads(docs_server, carol) if t["id"] not in known]
    assert "Sources: [1] " in reply.text
    sent = {e["name"]: e for e in reply.elements}
    assert sent and all(e["display"] == "side" for e in sent.values())

    for _ in range(40):  # Chainlit stores elements in tasks of their own
        stored = docs_server.rows("select * from conversation_element where conversation_id = :i", i=thread_id)
        if len(stored) == len(sent):
            break
        await asyncio.sleep(0.25)
    assert {r["name"] for r in stored} == set(sent) and {r["tenant"] for r in stored} == {"sales"}

    # Reopened: the answer comes back with its panels, each carrying its passage (the browser fetches `url`).
    thread = httpx.get(f"{docs_server.url}/chat/project/thread/{thread_id}", cookies=carol).json()
    [answer] = [s for s in thread["steps"] if s["type"] == "assistant_message" and "Sources:" in s["output"]]
    assert {e["name"] for e in thread["elements"]} == set(sent)
    first = thread["elements"][0]
    assert first["forId"] == answer["id"] and first["type"] == "text" and first["display"] == "side"
    assert first["url"].startswith("data:text/markdown;charset=utf-8,")
    passage = unquote(first["url"].split(",", 1)[1])
    assert passage.startswith(("> ", "_")) and "> " in passage  # the quote; its label is the panel's title
    async with ChainlitSession(docs_server.url, carol, thread_id=thread_id) as reopened:
        [resumed] = [d for n, d in reopened.events if n == "resume_thread"]
    assert {e["name"] for e in resumed["elements"]} == set(sent)
    r = httpx.get(f"{docs_server.url}/chat/project/thread/{thread_id}/element/{first['id']}", cookies=carol)
    assert r.status_code == 200 and r.json()["name"] == first["name"]

    # Nobody else reads them.
    assert httpx.get(f"{docs_server.url}/chat/project/thread/{thread_id}", cookies=alice).status_code == 404
    r = httpx.get(f"{docs_server.url}/chat/project/thread/{thread_id}/element/{first['id']}", cookies=alice)
    assert r.status_code == 404

    # Deleting the conversation deletes them.
    r = httpx.request("DELETE", f"{docs_server.url}/chat/project/thread", cookies=carol, json={"threadId": thread_id})
    assert r.status_code == 200
    assert docs_server.rows("select id from conversation_element where conversation_id = :i", i=thread_id) == []


async def test_an_answer_cut_at_the_length_limit_says_so(docs_server):
    _pricing_in_the_knowledge_base(docs_server)
    alice = docs_server.login("alice")
    async with ChainlitSession(docs_server.url, alice, chat_profile="sales/deal-desk") as chat:
        reply = await chat.ask("Who must approve a discount of more than 20%?")
    turn = docs_server.rows("select completion_tokens from chat_turn order by id desc limit 1")[0]
    assert turn["completion_tokens"] <= 3
    assert f"{CUT_NOTE}\n\n-- Deal Desk" in reply.text, reply.text
    assert reply.text.split("\n\nSources: ")[0].endswith("-- Deal Desk")  # the sign-off stays the last line


async def test_switching_assistant_says_the_conversation_stays_in_the_history(live_server):
    """The dialog of a new chat / another assistant (navigation.newChat.dialog.description) as served."""
    r = httpx.get(f"{live_server.url}/chat/project/translations", params={"language": "en-US"},
                  cookies=live_server.login("alice"))
    text = r.json()["translation"]["navigation"]["newChat"]["dialog"]["description"]
    assert "clear" not in text and "stays in the history" in text
