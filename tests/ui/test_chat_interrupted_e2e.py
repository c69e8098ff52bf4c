"""A served chat process SIGKILLed mid-answer, then started again on the same data: the reopened conversation shows
what had been streamed, marked interrupted, and the turn is `interrupted` with the tokens streamed so far (marked by
the new process once the old one's lease is over)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from tests.chainlit_client import ChainlitSession
from tests.conftest import start_server, stop_server
from tests.llm.fakes import SlowOpenAI, make_config_dir
from ui.chat_text import INTERRUPTED_NOTE

pytestmark = pytest.mark.slow


async def _poll(check, deadline_s: float = 90):  # noqa: ANN001, ANN202
    end = time.monotonic() + deadline_s
    while not (value := await asyncio.to_thread(check)) and time.monotonic() < end:
        await asyncio.sleep(0.3)
    return value


async def test_an_answer_cut_by_a_killed_process_is_kept_as_interrupted(tmp_path):
    with SlowOpenAI(words=600, delay=0.05) as provider:
        cfg = make_config_dir(tmp_path, model_list=[
            {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                       "api_base": provider.url}}],
            quotas={"tokens_per_day": None, "monthly_budget_usd": None})
        env = {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_INGEST_WORKER": "false", "ATRIUM_LEASE_S": "2",
               "ATRIUM_TURN_PROGRESS_S": "0.2", "ATRIUM_CONVERSATION_TITLES": "off"}
        server = start_server(tmp_path / "app", env)
        try:
            alice = server.login("alice")
            async with ChainlitSession(server.url, alice, chat_profile="sales/sales-assistant") as chat:
                asking = asyncio.create_task(chat.ask("Hello! Tell me a very long story."))

                def kept() -> list[dict]:
                    return server.rows("select conversation_id, output from conversation_step "
                                       "where type = 'assistant_message' and output like '%word3%'")

                partial = await _poll(kept)
                assert partial, server.log_tail()
                server.process.kill()  # SIGKILL mid-answer
                server.process.wait(30)
                asking.cancel()
                with contextlib.suppress(BaseException):
                    await asking
        except BaseException:
            if server.process.poll() is None:
                stop_server(server)
            raise
        [(conversation, _)] = [(r["conversation_id"], r["output"]) for r in partial]

        again = start_server(tmp_path / "app", env)  # the same data dir: the next start
        try:
            turns = await _poll(lambda: again.rows(
                "select status, outcome, completion_tokens from chat_turn where subject = 'alice' "
                "and channel = 'ui' and status = 'interrupted'"))
            assert turns and turns[0]["outcome"] == "interrupted" and turns[0]["completion_tokens"] > 0, \
                again.log_tail()
            cookies = again.login("alice")
            thread = httpx.get(f"{again.url}/chat/project/thread/{conversation}", cookies=cookies, timeout=30).json()
            [answer] = [s["output"] for s in thread["steps"] if s["type"] == "assistant_message"]
            assert answer.startswith("word0 word1 word2 word3") and answer.endswith(INTERRUPTED_NOTE), answer
        finally:
            stop_server(again)
