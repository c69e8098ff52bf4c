"""Current provider models (December 2026) through the real LiteLLM Router: they think before they answer and
refuse a prompt's temperature; a model past its retirement date in LiteLLM's table is left out, naming its
successor. Anthropic is played by a local server speaking its Messages API (FakeAnthropic), OpenAI-compatible
servers by FakeOpenAI."""

from __future__ import annotations

import asyncio
import html
from datetime import date, timedelta

import litellm
import openai
import pytest
import yaml

from backend.chat.types import ChatRequest, TurnResult
from backend.llm.router import ModelsConfig, live_deployments, retirement, table_entry
from tests.conftest import REPO, TEST_TODAY, session_cookie_for
from tests.llm.fakes import FakeAnthropic, FakeOpenAI, make_config_dir, sdk_for, set_tenant
from tests.llm.test_models import alice, run, turn_row


def served_by(tier: str, model: str, url: str, **params) -> dict:
    return {"model_name": tier, "litellm_params": {"model": model, "api_key": "sk-ant-test", "api_base": url,
                                                   **params}}


def keyed(tier: str, model: str, key_var: str, **model_info) -> dict:
    return {"model_name": tier, "litellm_params": {"model": model, "api_key": f"os.environ/{key_var}"},
            **({"model_info": model_info} if model_info else {})}


def test_the_shipped_models_are_current_and_priced():
    config = ModelsConfig.load(REPO / "config" / "models.yaml")
    remote = [d["litellm_params"]["model"] for d in config.model_list
              if not d["litellm_params"]["model"].startswith(("local/", "hosted_vllm/"))]
    assert len(remote) == 6
    for model in remote:
        assert table_entry(model) is not None, f"{model} is not in LiteLLM's model table (no price)"
        r = retirement(model)
        assert r is None or r.on > TEST_TODAY + timedelta(days=60), f"{model} retires on {r.on}"


def test_a_retired_model_is_left_out_naming_its_successor_and_a_retiring_one_is_reported(make_settings,
                                                                                          monkeypatch):
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(var, "test-key")
    config = ModelsConfig(model_list=[
        keyed("smart", "anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),  # retired 2026-11-30
        keyed("smart", "gemini/gemini-2.5-pro", "GEMINI_API_KEY", ignore_retirement=True),  # retired, kept
        keyed("fast", "openai/gpt-4.1-mini", "OPENAI_API_KEY"),  # retires 2027-01-14
        keyed("fast", "anthropic/claude-haiku-5-5", "ANTHROPIC_API_KEY"),  # current
    ])
    live = live_deployments(config, make_settings(), local_available=False, today=date(2026, 12, 1))
    why = live.excluded["smart:anthropic/claude-sonnet-4-5"]
    assert "reached its retirement date on 2026-11-30" in why
    assert "ATRIUM_MODEL_SMART=anthropic/claude-sonnet-5-5" in why and "ignore_retirement" in why
    assert live.live == {"smart": ["gemini/gemini-2.5-pro"], "fast": ["openai/gpt-4.1-mini",
                                                                      "anthropic/claude-haiku-5-5"]}
    assert live.retiring["fast:openai/gpt-4.1-mini"].startswith("openai/gpt-4.1-mini retires on 2027-01-14")
    assert "openai/gpt-6-luna" in live.retiring["fast:openai/gpt-4.1-mini"]
    assert live.retiring["smart:gemini/gemini-2.5-pro"].endswith("(kept: ignore_retirement)")
    assert "fast:anthropic/claude-haiku-5-5" not in live.retiring
    assert all("ignore_retirement" not in d["model_info"] for d in live.deployments), "not LiteLLM's to read"

    # The day before, it is still served: live, and reported.
    before = live_deployments(config, make_settings(), local_available=False, today=date(2026, 11, 29))
    assert "anthropic/claude-sonnet-4-5" in before.live["smart"]
    assert "retires on 2026-11-30" in before.retiring["smart:anthropic/claude-sonnet-4-5"]

    # An override naming a retired model is left out the same way.
    overridden = live_deployments(config, make_settings(ATRIUM_MODEL_FAST="anthropic/claude-sonnet-4-5"),
                                  local_available=False, today=date(2026, 12, 1))
    assert "fast" not in overridden.live
    assert "retirement date" in overridden.excluded["fast:anthropic/claude-sonnet-4-5"]


def test_readyz_and_the_operations_page_report_a_retiring_model(tmp_path, make_api_client, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    cfg = make_config_dir(tmp_path, model_list=[keyed("fast", "openai/gpt-4.1-mini", "OPENAI_API_KEY"),
                                                keyed("smart", "anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY")])
    api = make_api_client(ATRIUM_CONFIG_DIR=str(cfg))
    ready = api.get("/readyz", cookies=session_cookie_for("root"))  # the details are for platform admins
    assert ready.status_code == 200, "a retiring model is still served: not a readiness failure"
    body = ready.json()
    assert "retires on 2027-01-14" in body["models_retiring"]["fast:openai/gpt-4.1-mini"]
    page = html.unescape(api.get("/admin", headers={"Cookie": f"access_token="
                                                          f"{session_cookie_for('root')['access_token']}"}).text)
    assert 'id="retiring"' in page and "openai/gpt-4.1-mini retires on 2027-01-14" in page


def test_a_thinking_model_answers_without_the_prompts_temperature_and_its_thinking_stays_out(model_services):
    with FakeAnthropic() as server:
        svc = model_services(model_list=[served_by("smart", "anthropic/claude-sonnet-5-5", server.url,
                                                   reasoning_effort="low")])
        result = run(svc, "Compare the approval chains", tier="smart")
        sent = server.requests[-1]
        streamed: list[str] = []

        async def stream() -> TurnResult:
            final = None
            req = ChatRequest(tenant="sales", assistant="sales-assistant", message="And the stream?", tier="smart")
            async for item in svc.chat.stream(alice(svc), req):
                if isinstance(item, TurnResult):
                    final = item
                else:
                    streamed.append(item)
            return final

        final = asyncio.run(stream())
    assert result.answer == "fake answer from claude-sonnet-5-5"
    assert "temperature" not in sent, "the prompt's 0.2 would be a 400 from this model"
    assert sent["output_config"] == {"effort": "low"} and sent["thinking"]["type"] == "adaptive"
    assert sent["max_tokens"] == 768  # the prompt's cap, thinking included
    assert FakeAnthropic.THINKING not in result.answer
    # Thinking is billed as output: completion tokens are the provider's output_tokens, priced by LiteLLM.
    assert result.completion_tokens == 30 + 4
    assert result.cost_usd == pytest.approx(sum(litellm.cost_per_token(
        model="anthropic/claude-sonnet-5-5", prompt_tokens=result.prompt_tokens, completion_tokens=34)))
    row = turn_row(svc, result.turn_id)
    assert (row.model, row.completion_tokens, row.outcome) == ("anthropic/claude-sonnet-5-5", 34, "ok")
    assert "".join(streamed).strip() == "fake answer from claude-sonnet-5-5" and FakeAnthropic.THINKING not in \
        "".join(streamed)
    assert final.completion_tokens == 34


def test_internal_tasks_on_a_thinking_fast_model_think_not_and_get_no_temperature(model_services):
    with FakeAnthropic(text="Discount approvals") as server:
        svc = model_services(model_list=[served_by("fast", "anthropic/claude-haiku-5-5", server.url,
                                                   reasoning_effort="none")])
        result = asyncio.run(svc.chat.internal(alice(svc), "sales", task="title",
                                               messages=[{"role": "user", "content": "Title: who approves 25%?"}]))
    sent = server.requests[-1]
    assert result.answer == "Discount approvals from claude-haiku-5-5"
    assert sent["thinking"] == {"type": "disabled"} and "temperature" not in sent and sent["max_tokens"] == 64


def test_self_hosted_and_local_models_still_get_the_prompts_temperature(model_services, monkeypatch):
    with FakeOpenAI() as server:
        vllm = {"model_name": "smart", "litellm_params": {"model": "hosted_vllm/acme-7b", "api_base": server.url}}
        svc = model_services(model_list=[vllm, {"model_name": "local", "litellm_params": {"model": "local/smollm2"}}])
        run(svc, "Compare the approval chains", tier="smart")
        assert (server.requests[-1]["temperature"], server.requests[-1]["max_tokens"]) == (0.2, 768)

    seen: list[dict] = []
    original = type(svc.llm.local)._params

    def recording(self, optional_params: dict) -> dict:
        seen.append(dict(optional_params))
        return original(self, optional_params)

    monkeypatch.setattr(type(svc.llm.local), "_params", recording)
    run(svc, "hi", tier="local")
    assert seen and seen[-1]["temperature"] == 0.2


def test_a_thinking_model_that_spends_the_whole_limit_thinking_says_what_to_change(model_services):
    with FakeAnthropic(think_only=True) as server:
        svc = model_services(model_list=[served_by("smart", "anthropic/claude-sonnet-5-5", server.url)])
        result = run(svc, "Compare the approval chains", tier="smart")
    assert (result.answer, result.finish_reason) == ("", "length")
    assert result.completion_tokens == 768
    note = " ".join(result.warnings)
    assert "spent all 768 tokens" in note and "max_tokens" in note and "reasoning_effort" in note


@pytest.fixture
def thinking_api(tmp_path, make_api_client):
    """Sales on smart = Claude Sonnet 5.5 played by FakeAnthropic, called with the official SDK."""
    server = FakeAnthropic(text="Recorded answer").__enter__()
    cfg = make_config_dir(tmp_path, model_list=[served_by("smart", "anthropic/claude-sonnet-5-5", server.url,
                                                          reasoning_effort="low")])
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["smart"]})
    sdk = sdk_for(make_api_client(ATRIUM_CONFIG_DIR=str(cfg)))
    yield sdk, server
    server.__exit__(None)


def test_a_callers_temperature_the_model_refuses_is_a_400_naming_it(thinking_api):
    sdk, server = thinking_api
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="smart", temperature=0.7, messages=[{"role": "user", "content": "hi"}])
    err = info.value.body
    assert (err["code"], err["param"]) == ("unsupported_parameter", "temperature")
    assert "claude-sonnet-5-5 does not support temperature=0.7" in err["message"]
    assert "drop_params" not in err["message"], "LiteLLM's own advice means nothing to an API caller"
    assert server.requests == []

    # The caller's own parameters (here `user`) do not turn the prompt's temperature into theirs.
    done = sdk.chat.completions.create(model="sales-assistant", user="crm-sync",
                                       messages=[{"role": "user", "content": "Who approves 25%?"}])
    assert done.choices[0].message.content == "Recorded answer from claude-sonnet-5-5"
    sent = server.requests[-1]
    assert "temperature" not in sent and sent["metadata"] == {"user_id": "crm-sync"}


def test_the_models_yaml_comment_and_readme_name_the_shipped_models():
    """The README's model table and models.yaml agree (a user reads one and configures the other)."""
    config = yaml.safe_load((REPO / "config" / "models.yaml").read_text())
    readme = (REPO / "README.md").read_text()
    for dep in config["model_list"]:
        model = dep["litellm_params"]["model"]
        if not model.startswith(("local/", "hosted_vllm/")):
            assert model in readme, f"README does not name {model}"


def test_the_studio_learns_which_tiers_use_a_temperature_and_think(tmp_path, make_api_client, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    cfg = make_config_dir(tmp_path, model_list=[
        {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-sonnet-5-5", "api_key": "sk-test",
                                                   "mock_response": "x"}},
        {"model_name": "local", "litellm_params": {"model": "local/smollm2"}}])
    api = make_api_client(ATRIUM_CONFIG_DIR=str(cfg))
    bob = {"Cookie": f"access_token={session_cookie_for('bob')['access_token']}"}
    detail = api.get("/api/t/sales/prompts/sales-assistant", headers=bob).json()
    assert detail["tier_models"] == {
        "smart": {"models": ["anthropic/claude-sonnet-5-5"], "temperature": False, "thinks": True},
        "local": {"models": ["local/smollm2"], "temperature": True, "thinks": False}}
    script = api.get("/studio/static/studio.js").text
    assert "temperature-note" in script and "tier_models" in script


def test_a_callers_reasoning_effort_reaches_a_thinking_model_and_is_refused_for_one_that_does_not_think(
        thinking_api, tmp_path, make_api_client):
    sdk, server = thinking_api
    done = sdk.chat.completions.create(model="smart", reasoning_effort="high",
                                       messages=[{"role": "user", "content": "Plan the Q3 pipeline review"}])
    assert done.choices[0].message.content == "Recorded answer from claude-sonnet-5-5"
    assert server.requests[-1]["output_config"] == {"effort": "high"}, "the caller's, over the deployment's low"

    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="smart", reasoning_effort="extreme",
                                    messages=[{"role": "user", "content": "x"}])
    assert (info.value.body["code"], info.value.body["param"]) == ("invalid_value", "reasoning_effort")

    with FakeOpenAI() as plain:  # a model that does not think: nothing to tell it, and the caller learns so
        cfg = make_config_dir(tmp_path / "plain", model_list=[{"model_name": "fast", "litellm_params": {
            "model": "hosted_vllm/acme-7b", "api_base": plain.url}}])
        set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast"]})
        other = sdk_for(make_api_client(ATRIUM_CONFIG_DIR=str(cfg)))
        with pytest.raises(openai.BadRequestError) as refused:
            other.chat.completions.create(model="fast", reasoning_effort="low",
                                          messages=[{"role": "user", "content": "hi"}])
        assert plain.requests == []
    err = refused.value.body
    assert (err["code"], err["param"]) == ("unsupported_parameter", "reasoning_effort")
    assert "hosted_vllm/acme-7b" in err["message"] and "do not think" in err["message"]
