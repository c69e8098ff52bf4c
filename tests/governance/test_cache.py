"""Response cache through the chat pipeline, in-process and Redis: hit, miss after a prompt label move and
after a document is added, never shared between tenants."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from sqlmodel import select

from backend.chat.types import ChatRequest
from backend.db.models import ChatTurn
from backend.governance.cache import MemoryCache, RedisCache, ResponseCache, cache_key, normalise_question
from backend.settings import REPO_ROOT
from tests.llm.fakes import FakeOpenAI


def principal(svc, user, groups):
    return svc.principal_from_claims({"sub": user, "preferred_username": user, "groups": groups})


def ask(svc, tenant, assistant, message, user="maria", groups=("sales", "finance"), **kw):
    req = ChatRequest(tenant=tenant, assistant=assistant, message=message, **kw)
    return asyncio.run(svc.chat.run(principal(svc, user, list(groups)), req))


@pytest.fixture
def cached_services(request, backend_kind, model_services, tmp_path):
    """Services with the smart tier on a fake OpenAI server (counts real model calls), a temp prompts dir
    and the cache on the parametrised backend."""
    prompts = tmp_path / "prompts"
    shutil.copytree(REPO_ROOT / "prompts", prompts)
    server = FakeOpenAI().__enter__()
    request.addfinalizer(lambda: server.__exit__(None))
    models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                           "api_base": server.url}}]
    env = {"ATRIUM_PROMPTS_DIR": str(prompts)}
    if backend_kind == "redis":
        env.update(REDIS_URL=request.getfixturevalue("redis_url"),
                   ATRIUM_REDIS_PREFIX=request.getfixturevalue("redis_prefix"))
    svc = model_services(model_list=models, **env)
    assert isinstance(svc.cache.backend, RedisCache if backend_kind == "redis" else MemoryCache)
    return svc, server


def test_normalisation_and_key_parts():
    assert normalise_question("  What is   the Discount  policy?? ") == "what is the discount policy"
    base = dict(prefix="p", tenant="sales", assistant="a", prompt_version=1, kb_version="1", model="smart")
    key = cache_key(**base, question="Hi!")
    assert key.startswith("p:cache:sales:")
    assert key == cache_key(**base, question="hi")
    for change in ({"tenant": "finance"}, {"assistant": "b"}, {"prompt_version": 2}, {"kb_version": "2"},
                   {"model": "fast"}, {"personal": "alice"}):
        assert cache_key(**{**base, **change}, question="hi") != key


def test_hit_is_marked_free_and_not_sent_to_the_model(cached_services):
    svc, server = cached_services
    first = ask(svc, "sales", "sales-assistant", "What is our refund policy?")
    second = ask(svc, "sales", "sales-assistant", "what is our refund policy")
    assert len(server.requests) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.answer == first.answer and second.cost_usd == 0 and second.prompt_tokens == 0
    assert first.cost_usd > 0
    with svc.db.session() as s:
        row = s.exec(select(ChatTurn).where(ChatTurn.id == second.turn_id)).one()
    assert row.cached and row.cost_usd == 0 and row.route_reason.startswith("cache hit")
    # Follow-up turns (with history) are never served from the cache.
    ask(svc, "sales", "sales-assistant", "What is our refund policy?",
        history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert len(server.requests) == 2


def test_tenants_never_share(cached_services):
    svc, server = cached_services
    ask(svc, "sales", "sales-assistant", "Who approves exceptions?")
    other = ask(svc, "finance", "finance-assistant", "Who approves exceptions?")
    assert not other.cached and len(server.requests) == 2


def test_a_prompt_that_names_the_user_is_cached_per_user(cached_services):
    """The shipped prompts render {{user_name}} (and {{today}}): an answer written for Maria is not served to
    Sam; a prompt with no per-request variable shares answers across the tenant's users."""
    svc, server = cached_services
    question = "Who approves exceptions?"
    assert "{{user_name}}" in svc.prompts.resolve("sales", "sales-assistant").body.replace(" ", "")
    ask(svc, "sales", "sales-assistant", question)
    assert not ask(svc, "sales", "sales-assistant", question, user="sam", groups=["sales"]).cached
    assert ask(svc, "sales", "sales-assistant", question).cached  # Maria again
    assert len(server.requests) == 2

    current = svc.prompts.resolve("sales", "sales-assistant")
    body = current.body.replace("{{user_name}}", "a colleague").replace("{{ user_name }}", "a colleague")
    body = body.replace("{{today}}", "").replace("{{ today }}", "")
    config = {**current.config, "variables": [v for v in current.config.get("variables", [])
                                              if v not in ("user_name", "today")]}
    version, _ = svc.prompts.create_version("sales", "sales-assistant", body=body, config=config,
                                            message="impersonal", author="bob", base_version=current.version)
    svc.prompts.move_label("sales", "sales-assistant", "production", version.version, who="bob")
    ask(svc, "sales", "sales-assistant", question)
    assert ask(svc, "sales", "sales-assistant", question, user="sam", groups=["sales"]).cached
    assert len(server.requests) == 3


def test_miss_after_a_prompt_label_move(cached_services):
    svc, server = cached_services
    ask(svc, "sales", "sales-assistant", "Summarise the discount rules")
    assert ask(svc, "sales", "sales-assistant", "Summarise the discount rules").cached
    current = svc.prompts.resolve("sales", "sales-assistant")
    version, _ = svc.prompts.create_version("sales", "sales-assistant", body=current.body + "\nBe brief.\n",
                                            config=dict(current.config), message="brief", author="bob",
                                            base_version=current.version)
    svc.prompts.move_label("sales", "sales-assistant", "production", version.version, who="bob")
    moved = ask(svc, "sales", "sales-assistant", "Summarise the discount rules")
    assert not moved.cached and moved.prompt_version == version.version
    assert len(server.requests) == 2
    assert ask(svc, "sales", "sales-assistant", "Summarise the discount rules").cached


def test_miss_after_a_document_is_added(cached_services):
    from backend.knowledge.service import UploadFile

    svc, server = cached_services
    question = "What discount can a Growth deal get without approval?"
    ask(svc, "sales", "sales-assistant", question)
    assert ask(svc, "sales", "sales-assistant", question).cached
    carol = principal(svc, "carol", ["sales", "sales-admins"])
    text = b"Discount policy. A Growth deal can get up to 15 percent discount without approval.\n"
    out = svc.knowledge.upload(carol, "sales", [UploadFile(filename="discounts.txt", data=text)])
    svc.knowledge.worker.drain({d["id"] for d in out["documents"]})
    after = ask(svc, "sales", "sales-assistant", question)
    assert not after.cached and len(server.requests) == 2
    assert after.citations, "the new document was retrieved"


def test_disabled_cache_never_hits(model_services, mock_models):
    svc = model_services(model_list=mock_models, ATRIUM_RESPONSE_CACHE="false")
    ask(svc, "sales", "sales-assistant", "hello there", tier="smart")
    assert not ask(svc, "sales", "sales-assistant", "hello there", tier="smart").cached


def test_memory_cache_expires_and_evicts():
    now = [0.0]
    cache = ResponseCache(backend=MemoryCache(max_entries=2, clock=lambda: now[0]), ttl_s=10)

    async def main():
        await cache.set("a", {"v": 1})
        await cache.set("b", {"v": 2})
        await cache.set("c", {"v": 3})  # evicts a (least recently used)
        assert await cache.get("a") is None and await cache.get("c") == {"v": 3}
        now[0] = 11
        assert await cache.get("c") is None

    asyncio.run(main())
