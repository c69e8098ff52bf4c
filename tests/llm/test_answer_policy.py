"""models.yaml `answers:`: per tier, how knowledge questions are answered; the defaults (grounded for the in-process
model, the check on for `local`), a prompt version's settings first, and a wrong value stopping the start with
what is allowed."""

from __future__ import annotations

import pytest

from backend.config_files import ConfigError
from backend.llm.answer_policy import check_answers, policy_for


def test_defaults_follow_where_the_tiers_model_runs():
    local = policy_for("local", answers={}, models=["local/smollm2"])
    assert (local.mode, local.grounding_check) == ("grounded", True) and "in-process" in local.reason
    served = policy_for("local", answers={}, models=["hosted_vllm/meta-llama/Llama-3.1-8B-Instruct"])
    assert (served.mode, served.grounding_check) == ("generative", True)  # a self-hosted model: checked
    smart = policy_for("smart", answers={}, models=["anthropic/claude-sonnet-5-5"])
    assert (smart.mode, smart.grounding_check) == ("generative", False)


def test_models_yaml_then_the_prompt_version_decide():
    answers = check_answers({"smart": {"grounding_check": True}, "local": {"mode": "generative"}})
    assert policy_for("smart", answers=answers, models=["x/y"]).grounding_check is True
    local = policy_for("local", answers=answers, models=["local/smollm2"])
    assert (local.mode, local.reason) == ("generative", "models.yaml answers.local.mode")
    prompt = policy_for("local", answers=answers, models=["local/smollm2"],
                        prompt_config={"answer_mode": "grounded", "grounding_check": False})
    assert (prompt.mode, prompt.grounding_check, prompt.reason) == ("grounded", False,
                                                                   "the prompt version's answer_mode")


@pytest.mark.parametrize(("raw", "says"), [
    ({"local": {"mode": "quoted"}}, "answers.local.mode is 'quoted'; use one of grounded, generative"),
    ({"local": {"grounding_check": "yes"}}, "answers.local.grounding_check must be true or false"),
    ({"local": {"mode": "grounded", "strict": True}}, "answers.local takes `mode`"),
    (["local"], "`answers:` must map a tier"),
])
def test_a_wrong_answers_section_names_the_tier_and_what_is_allowed(raw, says):
    with pytest.raises(ConfigError, match=None) as info:
        check_answers(raw, source="models.yaml")
    assert says in str(info.value)
