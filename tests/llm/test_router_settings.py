"""models.yaml `router_settings` (issue 16): every key LiteLLM's Router takes reaches it, typed as LiteLLM expects;
an unknown or misspelt key stops the start-up naming it; with REDIS_URL a deployment one replica cooled down is
skipped by the others (two LLMService instances, each with its own Router, on the real Redis)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
import yaml
from litellm.exceptions import InternalServerError

from backend.config_files import ConfigError
from backend.llm.router import ModelsConfig
from backend.llm.service import LLMService
from tests.llm.fakes import REPO, FakeOpenAI, make_config_dir, mock

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _litellm_callbacks_restored():
    """Some Router settings (Redis, usage-based routing) register callbacks in litellm's module-wide lists; one
    Router per process in production, many here: later tests of this process must not inherit them."""
    import litellm

    names = ("callbacks", "success_callback", "failure_callback", "_async_success_callback",
             "_async_failure_callback", "input_callback", "service_callback")
    saved = {n: list(getattr(litellm, n, [])) for n in names}
    yield
    for n, value in saved.items():
        if hasattr(litellm, n):
            getattr(litellm, n)[:] = value


def write_models(root: Path, router_settings: dict) -> Path:
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump({"model_list": [mock("fast", "openai/gpt-4o-mini", "hi")],
                                    "router_settings": router_settings}))
    return path


def service(make_settings, cfg: Path, **env) -> LLMService:
    settings = make_settings(ATRIUM_CONFIG_DIR=str(cfg), **env)
    return LLMService(settings=settings, config=ModelsConfig.load(cfg / "models.yaml"))


def ask(llm: LLMService, tier: str = "fast", **kw) -> str:
    async def go() -> str:
        final = await llm.complete(tier=tier, messages=[{"role": "user", "content": "hi"}], **kw)
        return final.text
    return asyncio.run(go())


def test_the_repository_models_yaml_loads():
    config = ModelsConfig.load(REPO / "config" / "models.yaml")
    assert config.router_settings["cooldown_time"] == 30.0 and config.router_settings["allowed_fails"] == 2


def test_every_router_setting_reaches_the_router_typed(tmp_path, make_settings):
    """Before, seven keys were passed and the rest (retry_policy, allowed_fails_policy, stream_timeout...) dropped."""
    from litellm import RetryPolicy
    from litellm.types.router import AllowedFailsPolicy

    given = {"retry_policy": {"InternalServerErrorRetries": 3, "RateLimitErrorRetries": 1},
             "allowed_fails_policy": {"RateLimitErrorAllowedFails": 5},
             "model_group_retry_policy": {"fast": {"TimeoutErrorRetries": 2}},
             "stream_timeout": 15, "max_fallbacks": 3, "retry_after": 1, "cooldown_time": 12,
             "enable_pre_call_checks": True, "routing_strategy": "least-busy", "num_retries": 0}
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "openai/gpt-4o-mini", "hi")], router_settings=given)
    llm = service(make_settings, cfg)
    passed = llm.router._config.arguments  # LiteLLM's record of the constructor arguments, as passed
    assert set(given) <= set(passed)
    assert isinstance(passed["retry_policy"], RetryPolicy) and passed["retry_policy"].InternalServerErrorRetries == 3
    assert isinstance(passed["allowed_fails_policy"], AllowedFailsPolicy)
    assert passed["allowed_fails_policy"].RateLimitErrorAllowedFails == 5
    assert isinstance(passed["model_group_retry_policy"]["fast"], RetryPolicy)
    assert (passed["stream_timeout"], passed["cooldown_time"], passed["routing_strategy"]) == (15.0, 12.0, "least-busy")
    assert "redis_url" not in passed  # no REDIS_URL: cooldowns stay in this process
    assert ask(llm) == "hi"


def test_retry_policy_is_honoured(tmp_path, make_settings):
    """num_retries 0, but retry_policy says 2 retries on a provider's 500: the provider sees 3 attempts."""
    with FakeOpenAI(fail=True) as server:
        models = [{"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                              "api_base": server.url}}]
        cfg = make_config_dir(tmp_path, model_list=models, fallbacks=[],
                              router_settings={"num_retries": 0, "retry_policy": {"InternalServerErrorRetries": 2}})
        with pytest.raises(InternalServerError):
            ask(service(make_settings, cfg))
        assert len(server.requests) == 3

        cfg = make_config_dir(tmp_path / "plain", model_list=models, fallbacks=[], router_settings={"num_retries": 0})
        with pytest.raises(InternalServerError):
            ask(service(make_settings, cfg))
        assert len(server.requests) == 4  # the control: one attempt without the policy


@pytest.mark.parametrize(("settings", "expected"), [
    ({"cooldown_tme": 5}, r"router_settings: unknown key `cooldown_tme`: did you mean `cooldown_time`\?"),
    ({"zzz_nothing_alike": 1}, r"unknown key `zzz_nothing_alike`: the valid keys here are .*retry_policy"),
    ({"retry_policy": {"InternalServerErrorRetrys": 2}},
     r"router_settings.retry_policy: unknown key `InternalServerErrorRetrys`: did you mean `InternalServerError"),
    ({"model_group_retry_policy": {"smart": {"TimeoutErrorRetrys": 1}}},
     r"router_settings.model_group_retry_policy.smart: unknown key `TimeoutErrorRetrys`"),
    ({"num_retries": "three"}, r"router_settings.num_retries: .*integer.*\(got 'three'\)"),
    ({"routing_strategy": "round-robin"}, r"router_settings.routing_strategy: .*simple-shuffle"),
    ({"fallbacks": [{"smart": "fast"}]}, r"router_settings.fallbacks: .*list"),
    ({"plugins": ["x"]}, r"router_settings.plugins: takes a Python object"),
    ({"fallback_access_check": "x"}, r"router_settings.fallback_access_check: takes a Python object"),
    ({"model_list": []}, r"`model_list` is not a router setting: deployments go in models.yaml's top-level"),
    (["num_retries"], r"router_settings: expected a mapping"),
])
def test_a_bad_router_setting_stops_the_start_naming_it(tmp_path, settings, expected):
    path = write_models(tmp_path, settings)
    with pytest.raises(ConfigError, match=expected) as caught:
        ModelsConfig.load(path)
    assert str(caught.value).startswith(str(path.absolute()))


def test_unknown_key_lists_what_litellm_accepts(tmp_path):
    from litellm import Router

    with pytest.raises(ConfigError) as caught:
        ModelsConfig.load(write_models(tmp_path, {"zzz_nothing_alike": 1}))
    accepted = [n for n in inspect.signature(Router.__init__).parameters if n not in ("self", "model_list")]
    assert all(name in str(caught.value) for name in accepted)


def test_context_window_fallbacks_stay_within_the_tenants_allowed_tiers(tmp_path, make_settings):
    """A context-window fallback smart -> fast is taken for a caller allowed both, never for one allowed smart
    alone (the Router's own rule would have answered it from fast)."""
    overflow = "This model's maximum context length is 10 tokens. However, your messages resulted in 99 tokens."
    with FakeOpenAI(fail=True, status=400, error=overflow) as small, FakeOpenAI(text="roomy") as big:
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                               "api_base": small.url}},
                  {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4.1-mini", "api_key": "sk-test",
                                                              "api_base": big.url}}]
        cfg = make_config_dir(tmp_path, model_list=models, fallbacks=[],
                              router_settings={"context_window_fallbacks": [{"smart": ["fast"]}]})
        llm = service(make_settings, cfg)
        assert ask(llm, "smart", ) == "roomy from gpt-4.1-mini"

        async def only_smart() -> None:
            async for _ in llm.stream(tier="smart", messages=[{"role": "user", "content": "hi"}], stream=False,
                                      allowed_tiers=["smart"]):
                pass
        with pytest.raises(Exception, match="maximum context length"):
            asyncio.run(only_smart())
        assert len(big.requests) == 1


def test_default_fallbacks_become_part_of_each_chain(tmp_path, make_settings):
    models = [mock("smart", "openai/gpt-4.1", "s"), mock("fast", "openai/gpt-4.1-mini", "f"),
              mock("local", "openai/gpt-4o-mini", "l")]
    cfg = make_config_dir(tmp_path, model_list=models, fallbacks=[{"smart": ["fast"]}],
                          router_settings={"default_fallbacks": ["local"]})
    llm = service(make_settings, cfg)
    assert llm._chains["fallbacks"] == {"smart": ["fast", "local"], "fast": ["local"]}
    assert "default_fallbacks" not in llm.router._config.arguments  # no catch-all rule bypasses the narrowing


# -- shared cooldowns ---------------------------------------------------------------------------------------


def _two_deployment_config(root: Path, bad: FakeOpenAI, good: FakeOpenAI) -> Path:
    """One tier, two deployments; the failing one weighs 1000 times more, so a Router that does not know it is
    cooled down picks it first (simple-shuffle is weighted)."""
    models = [{"model_name": "fast", "litellm_params": {"model": "openai/cool-bad", "api_key": "sk-test",
                                                          "api_base": bad.url, "weight": 1000},
               "model_info": {"id": f"fast-bad-{root.name}"}},
              {"model_name": "fast", "litellm_params": {"model": "openai/cool-good", "api_key": "sk-test",
                                                          "api_base": good.url, "weight": 1},
               "model_info": {"id": f"fast-good-{root.name}"}}]
    return make_config_dir(root, model_list=models, fallbacks=[],
                           router_settings={"num_retries": 0, "allowed_fails": 0, "cooldown_time": 120})


async def _ask(llm: LLMService) -> str:
    final = await llm.complete(tier="fast", messages=[{"role": "user", "content": "hi"}])
    return final.text


async def _fail_once_then_skip(one: LLMService, bad: FakeOpenAI) -> None:
    """One event loop throughout, as in a served process: LiteLLM records a failure's cooldown in a task."""
    for _ in range(20):  # bounded: the heavy deployment is picked first all but ~1 time in 1000
        try:
            await _ask(one)
        except InternalServerError:
            pass
        if bad.requests:
            break
    assert len(bad.requests) == 1
    assert (await _ask(one)).startswith("fake answer from cool-good")  # cooled down here...
    assert len(bad.requests) == 1


def test_a_cooldown_on_one_replica_is_seen_by_the_other_through_redis(tmp_path, make_settings, redis_url):
    with FakeOpenAI(fail=True) as bad, FakeOpenAI() as good:
        cfg = _two_deployment_config(tmp_path / "shared", bad, good)
        one, two = (service(make_settings, cfg, REDIS_URL=redis_url) for _ in range(2))
        assert one.router is not two.router and one.router._config.arguments["redis_url"] == redis_url

        async def scenario() -> list[str]:
            await _fail_once_then_skip(one, bad)
            return [await _ask(two) for _ in range(5)]  # ...and on the other replica, which never saw the failure

        answers = asyncio.run(scenario())
        assert all(a.startswith("fake answer from cool-good") for a in answers)
        assert len(bad.requests) == 1


def test_the_routers_redis_keys_are_under_atrium_redis_prefix(tmp_path, make_settings, redis_url):
    """Several deployments may share one Redis (ATRIUM_REDIS_PREFIX): LiteLLM's cooldown and usage keys go under
    `<prefix>:litellm:`, nothing at the top of the database (the fixture's database starts empty)."""
    import redis

    prefix = "atrium-router-test"
    with FakeOpenAI(fail=True) as bad, FakeOpenAI() as good:
        cfg = _two_deployment_config(tmp_path / "prefixed", bad, good)
        one = service(make_settings, cfg, REDIS_URL=redis_url, ATRIUM_REDIS_PREFIX=prefix)
        assert one.router._config.arguments["cache_kwargs"] == {"namespace": f"{prefix}:litellm"}
        asyncio.run(_fail_once_then_skip(one, bad))  # the cooldown is written to Redis
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = sorted(client.scan_iter("*"))
    finally:
        client.close()
    assert keys and all(k.startswith(f"{prefix}:litellm:") for k in keys), keys


def test_router_settings_may_name_their_own_namespace(tmp_path, make_settings, redis_url):
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "openai/gpt-4o-mini", "hi")],
                          router_settings={"cache_kwargs": {"namespace": "theirs"}})
    llm = service(make_settings, cfg, REDIS_URL=redis_url, ATRIUM_REDIS_PREFIX="ours")
    assert llm.router._config.arguments["cache_kwargs"] == {"namespace": "theirs"}


def test_without_redis_each_replica_learns_on_its_own(tmp_path, make_settings):
    """The control: the same two replicas without REDIS_URL; the second pays the failure again."""
    with FakeOpenAI(fail=True) as bad, FakeOpenAI() as good:
        cfg = _two_deployment_config(tmp_path / "apart", bad, good)
        one, two = (service(make_settings, cfg) for _ in range(2))

        async def scenario() -> None:
            await _fail_once_then_skip(one, bad)
            for _ in range(5):
                try:
                    await _ask(two)
                except InternalServerError:
                    break

        asyncio.run(scenario())
        assert len(bad.requests) == 2
