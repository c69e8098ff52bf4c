"""The in-process model (backend/llm/local_provider.py), for real (SmolLM2 via llama.cpp): a caller that goes
away stops the generation (one model serves every tenant), and a message longer than its context, or a
max_tokens larger than it, is the caller's 400, not a 502 "try again" or minutes of the one model's time."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import openai
import pytest
from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.chat.types import ChatRequest
from backend.db.engine import Database, make_engine
from backend.db.models import ChatTurn
from backend.errors import BadRequest
from backend.llm.local_provider import LocalLlama

LONG_TASK = [{"role": "user", "content": "Count from 1 to 500, separated by commas."}]


class CountingLlama(LocalLlama):
    """Counts the tokens llama.cpp really generated (whether or not anyone read them)."""

    generated = 0

    def _model(self) -> Any:
        llm = super()._model()
        outer = self
        real = llm.create_chat_completion

        def counting(*args: Any, **kwargs: Any) -> Any:
            for part in real(*args, **kwargs):
                outer.generated += 1
                yield part

        if not getattr(llm, "_counting", False):
            llm.create_chat_completion = counting
            llm._counting = True
        return llm


async def _read(local: LocalLlama, chunks: int | None, max_tokens: int) -> int:
    stream = local.astreaming("local/smollm2", LONG_TASK, None, {}, None, None, None, None, None,
                              {"max_tokens": max_tokens, "temperature": 0.0})
    read = 0
    async for _ in stream:
        read += 1
        if chunks is not None and read >= chunks:
            break
    await stream.aclose()
    return read


def test_a_caller_that_goes_away_stops_the_generation():
    local = CountingLlama(n_threads=max(1, (os.cpu_count() or 2) // 2))
    assert asyncio.run(_read(local, None, 80)) > 60  # read to the end: it really writes that much
    local.generated = 0
    assert asyncio.run(_read(local, 3, 80)) == 3
    with local.scheduler.turn("test"):  # the generating thread has finished (it held the model until then)
        pass
    assert local.generated < 20, f"{local.generated} tokens generated for a caller that read 3"


def test_a_message_longer_than_the_context_is_the_callers_400(services):
    alice = services.principal_from_claims({"sub": "alice", "preferred_username": "alice", "groups": ["sales"]})
    req = ChatRequest(tenant="sales", assistant="", message="", tier="local", max_tokens=16,
                      messages=[{"role": "user", "content": "the quick brown fox " * 800}])
    with pytest.raises(BadRequest) as caught:
        asyncio.run(services.chat.run(alice, req))
    assert caught.value.status_code == 400 and caught.value.code == "context_length_exceeded"
    assert "holds 2048 (ATRIUM_LLM_CONTEXT): shorten it" in caught.value.message


def test_max_tokens_beyond_the_local_models_context_is_the_callers_400(live_server):
    """Red team: `max_tokens` 100,000 on the `local` tier, whose context is 2048 tokens (ATRIUM_LLM_CONTEXT), was
    taken; three such calls from one tenant held the process-wide model lock for about 90 s. Like a provider tier's
    output limit, the local model's is a 400 `max_tokens_too_large` naming it, before the model is called."""
    engine = make_engine(f"sqlite:///{live_server.data_dir / 'atrium.db'}")
    try:
        key = issue_key(db=Database(engine), tenant="sales", scopes=["chat"]).token
    finally:
        engine.dispose()
    client = openai.OpenAI(base_url=f"{live_server.url}/api/t/sales/v1", api_key=key, max_retries=0, timeout=120)
    ask = [{"role": "user", "content": "Say hello."}]
    answered = "select id from chat_turn where tier = 'local' and completion_tokens > 0"
    before = len(live_server.rows(answered))
    for field in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="local", messages=ask, **{field: 100_000})
        error = caught.value.body
        assert error["code"] == "max_tokens_too_large", error
        assert "local tier can write (2048 for local/smollm2); lower max_tokens" in error["message"], error
    assert len(live_server.rows(answered)) == before  # the model wrote nothing for them
    done = client.chat.completions.create(model="local", messages=ask, max_tokens=2048, temperature=0.0)
    assert done.choices[0].message.content  # the window itself is a valid request


def test_a_stream_closed_mid_answer_is_recorded_as_cancelled_with_what_was_generated(services):
    alice = services.principal_from_claims({"sub": "alice", "preferred_username": "alice", "groups": ["sales"]})
    req = ChatRequest(tenant="sales", assistant="", message="", tier="local", max_tokens=120, messages=LONG_TASK)

    async def go() -> None:
        stream = services.chat.stream(alice, req)
        got = 0
        async for item in stream:
            if isinstance(item, str) and item:
                got += 1
                if got == 5:
                    break
        await stream.aclose()

    asyncio.run(go())
    with services.db.session() as s:
        row = s.exec(select(ChatTurn).order_by(ChatTurn.id.desc())).first()
    assert row is not None and row.outcome == "cancelled"
    assert row.prompt_tokens > 0 and row.completion_tokens > 0 and row.tier == "local"
    assert row.model == "local/smollm2"  # billed to the model that was streaming, not "(no model call)"


def test_json_mode_is_honoured_by_the_local_model():
    """response_format reaches llama.cpp, which constrains the output to JSON (OpenAI's json_schema included)."""
    import json

    local = LocalLlama(n_threads=max(1, (os.cpu_count() or 2) // 2))
    ask = [{"role": "user", "content": "Describe a cat named Felix."}]
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    for fmt in ({"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}},):
        out = "".join(c["text"] for c in local._generate(ask, {"max_tokens": 48, "temperature": 0.0,
                                                                 "response_format": fmt}))
        assert isinstance(json.loads(out)["name"], str), out
