from __future__ import annotations

import pytest

from tests.llm.fakes import make_config_dir, mock

NO_QUOTAS = {"requests_per_minute": None, "user_requests_per_minute": None, "tokens_per_day": None,
             "monthly_budget_usd": None}


@pytest.fixture
def mock_models():
    """The three tiers answered by mock_response: text names the tier."""
    return [mock("fast", "anthropic/claude-haiku-5-5", "fast says hi"),
            mock("smart", "anthropic/claude-sonnet-5-5", "smart says hi")]


@pytest.fixture
def model_services(tmp_path, make_settings):
    """make(model_list=..., policy=..., **env) -> Services built on a test config dir."""
    from backend.container import build_services

    built = []

    def make(*, model_list, fallbacks=None, prices=None, policy=None, quotas=None, router_settings=None,
             answers=None, **env):
        cfg = make_config_dir(tmp_path / f"c{len(built)}", model_list=model_list, fallbacks=fallbacks,
                              prices=prices, policy=policy, quotas=NO_QUOTAS if quotas is None else quotas,
                              router_settings=router_settings, answers=answers)
        svc = build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg), **env))
        built.append(svc)
        return svc

    yield make
    for svc in built:
        svc.close()
