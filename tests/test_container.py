"""build_services, where tenants.yaml meets models.yaml, demo_users.yaml and the prompts folder: a model policy naming
a tier that is not configured stops the start-up; a missing demo users file or assistant prompt is a WARNING."""

from __future__ import annotations

import logging
import shutil

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


def test_without_demo_users_the_dev_login_warns_naming_the_expected_file(tmp_path, make_settings, built, caplog):
    cfg = make_config_dir(tmp_path, model_list=MODELS)
    (cfg / "demo_users.yaml").unlink()
    with caplog.at_level(logging.WARNING, logger="atrium"):
        built.append(build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false")))
    [warning] = [r for r in caplog.records if r.getMessage() == "demo login is on but there are no demo users"]
    assert warning.levelno == logging.WARNING and warning.path == str(cfg / "demo_users.yaml")
    assert "ATRIUM_DEV_LOGIN=false" in warning.fix
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="atrium"):  # the login is off: nothing to warn about
        built.append(build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false",
                                                  ATRIUM_DEV_LOGIN="false")))
    assert not [r for r in caplog.records if "demo users" in r.getMessage()]


def test_each_assistant_without_a_prompt_is_a_start_up_warning(tmp_path, make_settings, prompts_root, built, caplog):
    shutil.rmtree(prompts_root / "sales" / "deal-desk")
    labels = prompts_root / "finance" / "finance-assistant" / "labels.yaml"
    labels.write_text(labels.read_text().replace("production: 1", "production: 4"))
    cfg = make_config_dir(tmp_path, model_list=MODELS)
    with caplog.at_level(logging.WARNING, logger="atrium"):
        built.append(build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_PROMPTS_DIR=str(prompts_root),
                                                  ATRIUM_INGEST_WORKER="false")))
    problems = {r.assistant: r.problem for r in caplog.records if r.getMessage() == "assistant has no prompt"}
    assert sorted(problems) == ["finance/finance-assistant", "sales/deal-desk"]
    assert problems["sales/deal-desk"].startswith(f"{prompts_root / 'sales' / 'deal-desk'} does not exist")
    assert "create v0001.md and labels.yaml there" in problems["sales/deal-desk"]
    assert problems["finance/finance-assistant"].startswith(f"{labels} points `production` at version 4 (v0004.md)")
    assert "move the label" in problems["finance/finance-assistant"]
