"""The served chat, over Chainlit's socket: an answer cut at the length limit says so ("type continue"), and
"continue" shows the rest of that answer from where it stopped — not the answer again from its start; the next
question is asked with the two as one answer in its history. The model: a local OpenAI-compatible server scripted
to stop at its length limit."""

from __future__ import annotations

import pytest

from backend.chat.continuation import INSTRUCTION
from tests.chainlit_client import ChainlitSession
from tests.conftest import start_server, stop_server
from tests.llm.fakes import FakeOpenAI, make_config_dir
from ui.chat_text import CONTINUED, CUT_NOTE

pytestmark = pytest.mark.slow

QUESTION = "What is the hotel cap per night?"
CUT = "Hotels are capped at $250 per night in standard locations and $375 per night in high-cost"
REST = "in high-cost cities, before taxes. Rail is preferred over flying for journeys of under four hours."


def scripted(body: dict) -> tuple[str, str]:
    return (REST, "stop") if body["messages"][-1]["content"] == INSTRUCTION else (CUT, "length")


async def test_continue_shows_the_rest_of_a_cut_answer(tmp_path):
    with FakeOpenAI(reply=scripted) as model:
        cfg = make_config_dir(tmp_path / "cfg", model_list=[
            {"model_name": "local", "litellm_params": {"model": "openai/acme-7b", "api_key": "sk-test",
                                                       "api_base": model.url}}],
            quotas={"tokens_per_day": None, "monthly_budget_usd": None})
        server = start_server(tmp_path / "app", {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_CONVERSATION_TITLES": "off",
                                                 "ATRIUM_QUERY_REWRITE": "off", "ATRIUM_INGEST_WORKER": "false"})
        try:
            async with ChainlitSession(server.url, server.login("alice"), chat_profile="sales/sales-assistant") as chat:
                cut = await chat.ask(QUESTION)
                assert CUT in cut.text and CUT_NOTE in cut.text, cut.text
                rest = await chat.ask("continue")
                later = await chat.ask("And in Dublin?")
        finally:
            stop_server(server)
    # The rest, from where the cut answer stopped: nothing of it repeated, nothing said to be cut.
    assert rest.text.startswith(f"{CONTINUED}cities, before taxes. Rail is preferred"), rest.text
    assert "$250" not in rest.text and CUT_NOTE not in rest.text
    continued = [r for r in model.requests if r["messages"][-1]["content"] == INSTRUCTION]
    assert len(continued) == 1 and continued[0]["messages"][-2] == {"role": "assistant", "content": CUT}
    # The next question's history holds the cut answer and its rest as one answer, and no "continue".
    sent = model.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == QUESTION and sent[3]["content"] == "And in Dublin?"
    assert sent[2]["content"] == f"{CUT} cities, before taxes. Rail is preferred over flying for journeys of under " \
                                 "four hours."
    assert CUT_NOTE in later.text
    # Each turn recorded as usual; the continuation says what it was.
    turns = server.rows("select route_reason, completion_tokens, outcome from chat_turn where channel = 'ui' "
                        "order by id")
    assert len(turns) == 3 and all(t["outcome"] == "ok" and t["completion_tokens"] > 0 for t in turns)
    assert "continues the previous answer" in turns[1]["route_reason"]
    assert "continues" not in turns[0]["route_reason"] + turns[2]["route_reason"]
