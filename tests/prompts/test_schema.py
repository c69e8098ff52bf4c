"""Front-matter schema, template validation and rendering: errors name the field / variable."""

from __future__ import annotations

import pytest

from backend.prompts.schema import (
    PromptConfig,
    PromptValidationError,
    RenderError,
    check_template,
    render,
    validate_version,
)

BASE = {"description": "d", "tier": "local", "temperature": 0.2, "max_tokens": 100,
        "variables": ["user_name", "context"], "author": "bob", "created_at": "2026-01-01T00:00:00Z",
        "message": "m"}


def test_a_valid_version_passes_and_keeps_a_stable_key_order():
    cfg, report = validate_version(BASE, "Hi {{user_name}}\n{{ context }}\n")
    assert report.ok and not report.warnings
    assert list(cfg.front_matter()) == ["description", "tier", "temperature", "max_tokens", "variables",
                                        "author", "created_at", "message"]


@pytest.mark.parametrize("change,field,words", [
    ({"temperature": 3}, "temperature", "2"),
    ({"max_tokens": 0}, "max_tokens", "1"),
    ({"description": ""}, "description", "at least 1"),
    ({"tier": "Bad Tier"}, "tier", "tier name"),
    ({"tier": None}, "settings", "model tier"),
    ({"variables": ["user_name", "password"]}, "variables", "'password' not provided"),
    ({"variables": ["context", "context"]}, "variables", "twice"),
    ({"colour": "blue"}, "colour", "unknown setting"),
])
def test_schema_problems_name_the_field(change, field, words):
    with pytest.raises(PromptValidationError) as err:
        validate_version({**BASE, **change}, "{{user_name}} {{context}}")
    problem = next(p for p in err.value.problems if p.field == field)
    assert words in problem.message


def test_model_instead_of_tier_is_accepted():
    cfg = PromptConfig.model_validate({**BASE, "tier": None, "model": "anthropic/claude-haiku-5-5"})
    assert cfg.model and "tier" not in cfg.front_matter()


@pytest.mark.parametrize("body,words", [
    ("Hello {{user_name", "line 1: '{{' is opened but never closed"),
    ("ok\nthen }} oops {{context}}", "line 2: '}}' closes nothing"),
    ("{{ user name }} {{context}}", "not a valid placeholder"),
    ("{{context}}\n\n{{today}}", "line 3: {{today}} is not a declared variable — declare it under Variables"),
    ("{{context}} {{salary}}", "{{salary}} is not a declared variable — Atrium provides only"),
    ("   \n", "empty"),
])
def test_template_problems_are_explained(body, words):
    report = check_template(body, ["user_name", "context"])
    assert any(words in p.message for p in report.problems), report.problems


def test_unused_declarations_and_missing_context_are_warnings_not_errors():
    report = check_template("Hello {{user_name}}", ["user_name", "today"])
    assert report.ok
    assert any("'today' is declared but not used" in w for w in report.warnings)
    assert any("{{context}}" in w for w in report.warnings)


def test_render_fills_declared_variables():
    out = render("Hi {{ user_name }}, see {{context}}.", {"user_name": "Bob", "context": "C"},
                 declared=["user_name", "context"])
    assert out == "Hi Bob, see C."


def test_render_names_undeclared_and_missing_variables():
    with pytest.raises(RenderError, match=r"undeclared variable\(s\): today \(declared: context\)"):
        render("{{today}} {{context}}", {"today": "x", "context": "y"}, declared=["context"])
    with pytest.raises(RenderError, match=r"no value for variable\(s\): user_name"):
        render("{{user_name}}", {}, declared=["user_name"])
