"""Provider switching, fallbacks, routing and cost through the real LiteLLM Router (mock_response or a
local server speaking OpenAI's protocol; provider keys are never available here)."""

from __future__ import annotations

import asyncio

import litellm
import pytest
from sqlmodel import select

from backend.chat.types import ChatRequest
from backend.db.models import ChatTurn
from backend.errors import BadRequest, Invalid, UpstreamError
from backend.settings import Settings
from tests.llm.fakes import FakeOpenAI, mock


def alice(svc):
    return svc.principal_from_claims({"sub": "alice", "preferred_username": "alice", "groups": ["sales"]})


def run(svc, message: str, **kw):
    req = ChatRequest(tenant="sales", assistant="sales-assistant", message=message, **kw)
    return asyncio.run(svc.chat.run(alice(svc), req))


def turn_row(svc, turn_id: int) -> ChatTurn:
    with svc.db.session() as s:
        return s.exec(select(ChatTurn).where(ChatTurn.id == turn_id)).one()


def test_keyless_deployments_are_excluded_and_reported(make_settings, monkeypatch):
    from backend.llm.router import ModelsConfig, live_deployments

    config = ModelsConfig.load(make_settings().config_dir / "models.yaml")
    live = live_deployments(config, make_settings(), local_available=True)
    assert set(live.live) == {"local"}
    assert live.excluded["smart:anthropic/claude-sonnet-5-5"] == "ANTHROPIC_API_KEY is not set"
    assert live.excluded["fast:openai/gpt-6-luna"] == "OPENAI_API_KEY is not set"

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    live = live_deployments(config, make_settings(), local_available=False)
    assert live.live == {"fast": ["openai/gpt-6-luna"], "smart": ["openai/gpt-6.1-sol"]}
    assert live.excluded["local:local/smollm2"].startswith("local model not installed")


def test_a_wrong_local_model_path_is_named_as_such(make_settings, tmp_path):
    from backend.llm.local_provider import LocalLlama
    from backend.llm.router import ModelsConfig
    from backend.llm.service import LLMService

    missing = tmp_path / "nope.gguf"
    assert LocalLlama(model_path=missing).unavailable_reason() == (
        f"ATRIUM_LOCAL_MODEL_PATH {missing} is not a file (unset it for the bundled SmolLM2)")
    assert LocalLlama().unavailable_reason() is None  # the bundled model (make bootstrap installs it)
    svc_settings = make_settings(ATRIUM_LOCAL_MODEL_PATH=str(missing))
    llm = LLMService(settings=svc_settings, config=ModelsConfig.load(svc_settings.config_dir / "models.yaml"))
    assert "local" not in llm.live.live
    assert llm.live.excluded["local:local/smollm2"].startswith("ATRIUM_LOCAL_MODEL_PATH")


def test_readyz_names_live_tiers_and_excluded_deployments(api_client):
    from tests.conftest import session_cookie_for

    body = api_client.get("/readyz", cookies=session_cookie_for("root")).json()  # details: platform admins only
    assert "smart:anthropic/claude-sonnet-5-5" in body["models_excluded"]
    assert "smart" not in body["models"]


def test_env_override_changes_the_model_actually_called(model_services, mock_models, monkeypatch):
    with FakeOpenAI() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        svc = model_services(model_list=mock_models, ATRIUM_MODEL_SMART="openai/gpt-6-luna")
        assert svc.llm.live.live["smart"] == ["openai/gpt-6-luna"]
        assert "ATRIUM_MODEL_SMART overrides" in svc.llm.live.excluded["smart:anthropic/claude-sonnet-5-5"]
        result = run(svc, "hello", tier="smart")
    assert [r["model"] for r in server.requests] == ["gpt-6-luna"]
    assert result.model == "openai/gpt-6-luna"
    assert "from gpt-6-luna" in result.answer
    assert result.cost_usd == pytest.approx(sum(litellm.cost_per_token(
        model="openai/gpt-6-luna", prompt_tokens=11, completion_tokens=7)))


def test_tenant_provider_preference_picks_the_provider(model_services):
    models = [mock("smart", "anthropic/claude-sonnet-5-5", "from anthropic"),
              mock("smart", "openai/gpt-4.1", "from openai"),
              mock("fast", "openai/gpt-4.1-mini", "fast")]
    svc = model_services(model_list=models, policy={"provider_preference": ["openai", "anthropic"]})
    answers = {run(svc, f"q{i}", tier="smart").model for i in range(6)}
    assert answers == {"openai/gpt-4.1"}

    svc = model_services(model_list=models, policy={"provider_preference": ["anthropic"]})
    assert {run(svc, f"q{i}", tier="smart").model for i in range(6)} == {"anthropic/claude-sonnet-5-5"}


def test_auto_routing_sends_light_to_fast_and_heavy_to_smart_and_stores_the_reason(model_services, mock_models):
    svc = model_services(model_list=mock_models, policy={"routing": "auto"})
    light = run(svc, "thanks, that's all!")
    heavy = run(svc, "Compare our three discount approval paths and explain which one fits a 3-year "
                     "Enterprise deal with upfront payment, step by step.")
    assert (light.tier, light.model) == ("fast", "anthropic/claude-haiku-5-5")
    assert (heavy.tier, heavy.model) == ("smart", "anthropic/claude-sonnet-5-5")
    row = turn_row(svc, heavy.turn_id)
    assert row.tier == "smart" and row.route_reason.startswith("auto: heavy")
    assert turn_row(svc, light.turn_id).route_reason.startswith("auto: light")


def test_auto_routing_of_a_follow_up_reads_the_previous_user_message(model_services, mock_models):
    """"add the error responses" is light on its own and heavy after a code request: the pipeline hands the
    classifier the user's previous message (REST/UI history, and the OpenAI-compatible messages alike)."""
    from backend.llm.routing import QueryClassifier

    svc = model_services(model_list=mock_models, policy={"routing": "auto"})
    svc.chat.classifier = QueryClassifier(weights={"bias": -2.0, "fu:prev:code": 4.0}, threshold=0.5)
    asked = "add the error responses"
    assert run(svc, asked).tier == "fast"
    code = [{"role": "user", "content": "write a python function that lists our invoices"},
            {"role": "assistant", "content": "def invoices(): ..."}]
    follow = run(svc, asked, history=code)
    assert follow.tier == "smart" and "prev:code" in follow.route_reason
    chat = [{"role": "user", "content": "what does the expense policy say about taxis?"},
            {"role": "assistant", "content": "Taxis are reimbursed..."}]
    assert run(svc, asked, history=chat).tier == "fast"
    plain = run(svc, "", messages=[*code, {"role": "user", "content": asked}])  # `model: <tier>` callers
    assert plain.tier == "smart"


def test_fixed_routing_uses_prompt_tier_or_the_best_allowed(model_services, mock_models):
    svc = model_services(model_list=mock_models, policy={"routing": "fixed", "allowed_tiers": ["fast"]})
    result = run(svc, "Compare everything and explain in depth, step by step.")
    assert result.tier == "fast"  # the prompt asks for `local`, which is not allowed here
    assert "not live: using fast" in result.route_reason
    with pytest.raises(Exception, match="tier 'smart' is not allowed"):
        run(svc, "hi", tier="smart")


def test_fallback_when_the_primary_fails_records_both(model_services):
    with FakeOpenAI(fail=True) as server:
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                               "api_base": server.url}},
                  mock("fast", "anthropic/claude-haiku-5-5", "the fallback answered")]
        svc = model_services(model_list=models)
        result = run(svc, "Explain the approval chain", tier="smart")
    assert server.requests, "the primary was really called"
    assert result.answer == "the fallback answered"
    assert (result.tier, result.fallback_from, result.model) == ("fast", "smart", "anthropic/claude-haiku-5-5")
    row = turn_row(svc, result.turn_id)
    assert (row.tier, row.fallback_from, row.model, row.outcome) == ("fast", "smart", "anthropic/claude-haiku-5-5",
                                                                     "ok")
    assert "smart failed, answered by fast" in row.route_reason


def test_a_request_the_provider_rejects_is_the_callers_400_not_a_fallback(model_services):
    """A provider's 400 (here: a stop list it refuses) means the request is wrong: the next tier is not asked
    (it would hide the error behind a weaker model and bill twice), the caller gets a 400 naming the reason.
    `fallback_on_unsupported_params: true` in models.yaml restores LiteLLM's fallback on it."""
    with FakeOpenAI(fail=True, status=400, error="'stop' must have at most 4 sequences") as primary, \
            FakeOpenAI(text="fallback") as fallback:
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                               "api_base": primary.url}},
                  {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4.1-mini", "api_key": "sk-test",
                                                              "api_base": fallback.url}}]
        svc = model_services(model_list=models)
        with pytest.raises(BadRequest, match="rejected the request: .*at most 4 sequences") as caught:
            run(svc, "Explain the approval chain", tier="smart")
        assert caught.value.status_code == 400
        assert len(primary.requests) == 1 and fallback.requests == []
        with svc.db.session() as s:
            row = s.exec(select(ChatTurn).order_by(ChatTurn.id.desc())).first()
        assert (row.outcome, row.tier) == ("error", "smart") and "at most 4 sequences" in row.error

        lenient = model_services(model_list=models, router_settings={"fallback_on_unsupported_params": True})
        result = run(lenient, "Explain the approval chain", tier="smart")
        assert (result.tier, result.fallback_from) == ("fast", "smart") and len(fallback.requests) == 1


def test_fallback_chain_is_transitive(model_services):
    with FakeOpenAI(fail=True) as server:
        down = {"api_key": "sk-test", "api_base": server.url}
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", **down}},
                  {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4.1-mini", **down}},
                  mock("local", "openai/gpt-4o-mini", "last resort")]
        svc = model_services(model_list=models)
        result = run(svc, "hello", tier="smart")
    assert {r["model"] for r in server.requests} == {"gpt-4.1", "gpt-4.1-mini"}
    assert (result.answer, result.tier, result.fallback_from) == ("last resort", "local", "smart")


def test_fallbacks_stay_within_the_tenants_allowed_tiers(model_services):
    """smart -> fast -> local is the configured chain; a tenant allowed smart and fast is never answered by
    local, one allowed smart alone never by fast: the provider's failure is then a clear 502."""
    with FakeOpenAI(fail=True) as server:
        down = {"api_key": "sk-test", "api_base": server.url}
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", **down}},
                  {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4.1-mini", **down}},
                  mock("local", "openai/gpt-4o-mini", "last resort")]
        two = model_services(model_list=models, policy={"allowed_tiers": ["smart", "fast"]})
        with pytest.raises(UpstreamError, match="failed after retries and fallbacks"):
            run(two, "hello", tier="smart")
        assert {r["model"] for r in server.requests} == {"gpt-4.1", "gpt-4.1-mini"}
        server.requests.clear()
        one = model_services(model_list=models, policy={"allowed_tiers": ["smart"]})
        with pytest.raises(UpstreamError):
            run(one, "hello", tier="smart")
        assert {r["model"] for r in server.requests} == {"gpt-4.1"}


def test_internal_tasks_do_not_fall_back_to_another_tier(model_services):
    """A query rewrite has its own fallback (a deterministic query): `fast` failing must not hand the task
    to another tier (the in-process model cannot rewrite reliably)."""
    with FakeOpenAI(fail=True) as server:
        models = [{"model_name": "fast", "litellm_params": {"model": "openai/gpt-4.1-mini", "api_key": "sk-test",
                                                              "api_base": server.url}},
                  mock("local", "openai/gpt-4o-mini", "local rewrite")]
        svc = model_services(model_list=models)
        with pytest.raises(UpstreamError):
            asyncio.run(svc.chat.internal(alice(svc), "sales", task="query_rewrite",
                                          messages=[{"role": "user", "content": "rewrite this"}]))
        assert [r["model"] for r in server.requests] == ["gpt-4.1-mini"]
        assert run(svc, "hello", tier="fast").answer == "local rewrite"  # a user turn still falls back


def test_an_answer_cut_by_max_tokens_says_so(model_services):
    with FakeOpenAI(text="one two three four five six") as server:
        models = [{"model_name": "fast", "litellm_params": {"model": "openai/gpt-4.1-mini", "api_key": "sk-test",
                                                              "api_base": server.url}}]
        svc = model_services(model_list=models)
        for stream in (False, True):
            cut = asyncio.run(svc.llm.complete(tier="fast", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=3)) if not stream else None
            if stream:
                async def last() -> object:
                    items = [i async for i in svc.llm.stream(tier="fast", max_tokens=3,
                                                             messages=[{"role": "user", "content": "hi"}])]
                    return items[-1]
                cut = asyncio.run(last())
            assert (cut.text.strip(), cut.finish_reason) == ("one two three", "length")
        whole = asyncio.run(svc.llm.complete(tier="fast", messages=[{"role": "user", "content": "hi"}]))
        assert whole.finish_reason == "stop"
        req = ChatRequest(tenant="sales", assistant="", message="", messages=[{"role": "user", "content": "hi"}],
                          tier="fast", max_tokens=2)
        assert asyncio.run(svc.chat.run(alice(svc), req)).finish_reason == "length"


def test_max_tokens_beyond_the_tiers_models_is_refused_not_sent_elsewhere(model_services, mock_models):
    svc = model_services(model_list=mock_models)
    req = ChatRequest(tenant="sales", assistant="", message="", messages=[{"role": "user", "content": "hi"}],
                      tier="fast", max_tokens=200_000)
    with pytest.raises(Invalid, match="more than the fast tier can write \\(128000 for anthropic/claude-haiku-5-5"):
        asyncio.run(svc.chat.run(alice(svc), req))
    req.max_tokens = 128_000
    assert asyncio.run(svc.chat.run(alice(svc), req)).answer == "fast says hi"


def test_env_override_without_its_provider_key_is_left_out(model_services, mock_models, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    svc = model_services(model_list=mock_models, ATRIUM_MODEL_SMART="anthropic/claude-opus-4-1")
    assert "smart" not in svc.llm.live.live
    assert svc.llm.live.excluded["smart:anthropic/claude-opus-4-1"] == (
        "ANTHROPIC_API_KEY is not set (ATRIUM_MODEL_SMART)")


def test_cost_uses_litellm_prices_configured_prices_and_zero_for_local(model_services, mock_models):
    svc = model_services(model_list=mock_models + [mock("fast", "hosted_vllm/acme-7b", "vllm")],
                         prices={"hosted_vllm/acme-7b": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}})
    known = svc.llm.cost(model="anthropic/claude-sonnet-5-5", prompt_tokens=1000, completion_tokens=100)
    assert known == pytest.approx(1000 * 2e-6 + 100 * 10e-6)
    assert svc.llm.cost(model="hosted_vllm/acme-7b", prompt_tokens=1000, completion_tokens=100) == pytest.approx(
        1000 * 1e-6 + 100 * 2e-6)
    assert svc.llm.cost(model="local/smollm2", prompt_tokens=1000, completion_tokens=100) == 0.0
    result = run(svc, "hello", tier="smart")
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.cost_usd == pytest.approx(svc.llm.cost(model="anthropic/claude-sonnet-5-5",
                                                         prompt_tokens=result.prompt_tokens,
                                                         completion_tokens=result.completion_tokens))
    assert turn_row(svc, result.turn_id).cost_usd == pytest.approx(result.cost_usd)


def test_internal_tasks_use_fast(model_services, mock_models):
    svc = model_services(model_list=mock_models)
    assert svc.llm.internal_tier() == "fast"
    svc = model_services(model_list=[mock("smart", "openai/gpt-4.1", "x")])
    assert svc.llm.internal_tier() == "smart"  # the only live tier


def test_settings_name_the_override_env_vars():
    s = Settings(ATRIUM_MODEL_FAST="gemini/gemini-2.5-flash")  # type: ignore[call-arg]
    assert s.model_override("fast") == "gemini/gemini-2.5-flash"


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-5-5", "anthropic/claude-haiku-5-5", "gemini/gemini-2.5-pro",
                                   "openai/gpt-6-luna"])
@pytest.mark.parametrize("tokens", [(1000, 100), (300_000, 2000)])
def test_cached_rates_price_exactly_like_litellm_including_tiered_models(model_services, mock_models, model,
                                                                         tokens):
    svc = model_services(model_list=mock_models)
    expected = sum(litellm.cost_per_token(model=model, prompt_tokens=tokens[0], completion_tokens=tokens[1]))
    for _ in range(2):  # the second call uses the cached per-token rates (when the price is flat)
        assert svc.llm.cost(model=model, prompt_tokens=tokens[0], completion_tokens=tokens[1]) == pytest.approx(
            expected, rel=1e-12)
