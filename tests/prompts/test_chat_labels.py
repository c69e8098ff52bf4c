"""Labels drive the served chat: production for everyone, staging for prompt editors only, and a label move
applies to the very next message of an open chat session (no restart, no new session)."""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.chainlit_client import ChainlitSession
from tests.conftest import REPO, start_server, stop_server
from ui.chat_text import history_text

pytestmark = pytest.mark.slow

SIGNOFF = "-- staged by Bob"
API = "/api/t/sales/prompts/sales-assistant"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labels")
    shutil.copytree(REPO / "prompts", tmp / "prompts")
    srv = start_server(tmp, extra_env={"ATRIUM_PROMPTS_DIR": str(tmp / "prompts")})
    yield srv
    stop_server(srv)


def _turns(server) -> list[dict]:
    return server.rows("select * from chat_turn order by id")


def _profiles(server, user: str) -> set[str]:
    r = httpx.get(f"{server.url}/chat/project/settings", cookies=server.login(user), params={"language": "en-US"})
    return {p["name"] for p in r.json()["chatProfiles"]}


async def test_staging_is_for_editors_and_label_moves_apply_to_the_next_message(server):
    assert "sales/sales-assistant@staging" in _profiles(server, "bob")
    assert "sales/sales-assistant@staging" not in _profiles(server, "alice")

    bob = server.login("bob")
    v1 = httpx.get(f"{server.url}{API}/versions/1", cookies=bob).json()
    r = httpx.post(f"{server.url}{API}/versions", cookies=bob, json={
        "body": v1["body"], "config": {**v1["config"], "signoff": SIGNOFF, "max_tokens": 24},
        "message": "staging sign-off", "base_version": 1})
    assert r.status_code == 201, r.text
    assert httpx.put(f"{server.url}{API}/labels/staging", cookies=bob, json={"version": 2}).status_code == 200

    async with ChainlitSession(server.url, bob, chat_profile="sales/sales-assistant@staging") as chat:
        staged = await chat.ask("Hello!")
    assert history_text(staged.text).rstrip().endswith(SIGNOFF), staged.text
    turn = _turns(server)[-1]
    assert (turn["subject"], turn["prompt_label"], turn["prompt_version"]) == ("bob", "staging", 2)

    async with ChainlitSession(server.url, bob, chat_profile="sales/sales-assistant") as chat:
        before = await chat.ask("Hello!")
        assert SIGNOFF not in before.text and _turns(server)[-1]["prompt_version"] == 1
        carol = server.login("carol")
        r = httpx.put(f"{server.url}{API}/labels/production", cookies=carol, json={"version": 2})
        assert r.status_code == 200
        after = await chat.ask("Hello again!")  # same open session, next message
    assert history_text(after.text).rstrip().endswith(SIGNOFF), after.text
    turn = _turns(server)[-1]
    assert (turn["prompt_label"], turn["prompt_version"]) == ("production", 2)


async def test_a_member_cannot_chat_with_staging_by_forging_the_profile(server):
    turns = len(_turns(server))
    async with ChainlitSession(server.url, server.login("alice"),
                               chat_profile="sales/sales-assistant@staging") as chat:
        reply = await chat.ask("Hello!")
    assert "Only prompt editors can chat with the staging prompt" in reply.text
    assert SIGNOFF not in reply.text
    staged = [t for t in _turns(server)[turns:] if t["prompt_label"] == "staging"]
    assert staged == [], "a member never gets an answer from the staging prompt"
