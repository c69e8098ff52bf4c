"""build_services, where tenants.yaml meets models.yaml: a model policy naming a tier that is not configured stops
the start-up."""

from __future__ import annotations

import pytest

from backend.config_files import ConfigError
from backend.container import build_services
from tests.llm.fakes import make_config_dir, mock, set_tenant

MODELS = [{"model_name": "local", "litellm_params": {"model": "local/smollm2"}},
          mock("fast", "anthropic/claude-haiku-5-5", "fast answer")]


@pytest.fixture
def built():
    services = []
    yield services
    for svc in services:
        svc.close()


def test_an_allowed_tier_that_is_not_configured_stops_the_start_up(tmp_path, make_settings):
    cfg = make_config_dir(tmp_path, model_list=MODELS)
    set_tenant(cfg, "engineering", policy={"allowed_tiers": ["local", "turbo"]})
    with pytest.raises(ConfigError) as info:
        build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg)))
    message = str(info.value)
    assert message.startswith(f"{cfg / 'tenants.yaml'}: tenant 'engineering': model_policy.allowed_tiers: `turbo` is "
                              "not a configured tier (configured: local, fast, smart: ")
    assert str(cfg / "models.yaml") in message and "add a deployment with that model_name" in message


def test_a_default_tier_outside_the_allowed_ones_stops_the_start_up(tmp_path, make_settings):
    cfg = make_config_dir(tmp_path, model_list=MODELS)
    set_tenant(cfg, "finance", policy={"allowed_tiers": ["local", "fast"], "default_tier": "smart"})
    with pytest.raises(ConfigError) as info:
        build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg)))
    assert str(info.value) == (
        f"{cfg / 'tenants.yaml'}: tenant 'finance': model_policy.default_tier `smart` is not in allowed_tiers "
        "[local, fast] (configured tiers: local, fast, smart): set default_tier to one of the allowed tiers, or "
        "allow it")


def test_a_model_name_of_models_yaml_is_a_tier_a_tenant_may_allow(tmp_path, make_settings, built):
    cfg = make_config_dir(tmp_path, model_list=[*MODELS, mock("reasoning", "anthropic/claude-sonnet-5-5", "deep")])
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["local", "reasoning"]})
    built.append(build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false")))
    assert built[0].registry.get("sales").model_policy.allowed_tiers == ["local", "reasoning"]
