"""Drafts: a prompt version as an editor sends it, validated exactly like a save (the tenant's tier policy, the
schema and the template), with every problem worded for the editor rather than in pydantic's terms."""

from __future__ import annotations

from typing import Any

from backend.errors import Invalid
from backend.prompts.schema import SYSTEM_FIELDS, Problem, PromptConfig, PromptValidationError, validate_version
from backend.prompts.store import PromptVersion
from backend.tenants import TenantConfig


def invalid(problems: list[Problem], warnings: list[str] | None = None) -> Invalid:
    detail = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return Invalid(f"the prompt was not saved: {detail}", code="invalid_prompt",
                   extra={"problems": [p.public() for p in problems], "warnings": warnings or []})


def tier_problems(cfg: TenantConfig, config: dict[str, Any]) -> list[Problem]:
    tier = config.get("tier")
    allowed_tiers = cfg.model_policy.allowed_tiers
    problems = []
    if isinstance(tier, str) and tier and tier not in allowed_tiers:
        problems.append(Problem("tier", f"{tier!r} is not allowed for {cfg.name} (allowed: "
                                        f"{', '.join(allowed_tiers)})"))
    if config.get("model"):
        # The router picks the concrete model inside a tier (fallbacks, provider preference, budget), so
        # a pinned model would be silently ignored: refuse it rather than pretend.
        problems.append(Problem("model", f"choose a model tier instead of a specific model; {cfg.name} "
                                         f"allows {', '.join(allowed_tiers)}"))
    return problems


def _limits(name: str) -> tuple[float, float]:
    """A number setting's bounds, read from the schema (ge/le), so the wording cannot drift from the rule."""
    lo = hi = None
    for rule in PromptConfig.model_fields[name].metadata:
        lo = getattr(rule, "ge", lo)
        hi = getattr(rule, "le", hi)
    assert lo is not None and hi is not None
    return lo, hi


def number_problem(name: str, value: Any) -> str:
    """What an editor reads for a refused number setting, instead of pydantic's wording ("Input should be greater
    than or equal to 1", "a number with a fractional part")."""
    lo, hi = _limits(name)
    whole = name == "max_tokens"
    rng = (f"a whole number of tokens between {lo:,} and {hi:,}" if whole
           else f"a number between {lo:g} and {hi:g}")
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"enter {rng}"
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or number != number:  # not a number (or NaN)
        return f"{value!r} is not a number: use {rng}"
    shown = f"{int(number):,}" if number.is_integer() else f"{number:g}"
    if whole and not number.is_integer():
        return f"{shown} is not a whole number: use {rng}"
    return f"{shown} is out of range: use {rng}"


def _phrased(problems: list[Problem], config: dict[str, Any]) -> list[Problem]:
    return [Problem(p.field, number_problem(p.field, config.get(p.field)))
            if p.field in ("max_tokens", "temperature") else p for p in problems]


def draft(cfg: TenantConfig, tenant: str, assistant: str, body: str, config: dict[str, Any],
          *, who: str, message: str = "draft") -> tuple[PromptVersion, list[str]]:
    """An unsaved version (number 0), validated exactly like a save (raises `invalid(...)`)."""
    meta = {k: v for k, v in config.items() if k not in SYSTEM_FIELDS}
    meta.update(author=who, created_at="draft", message=message)
    problems = tier_problems(cfg, meta)
    try:
        parsed, report = validate_version(meta, body)
    except PromptValidationError as exc:
        raise invalid(problems + _phrased(exc.problems, meta)) from None
    if problems:
        raise invalid(problems)
    return PromptVersion(tenant=tenant, assistant=assistant, version=0, body=body,
                         config=parsed.front_matter()), report.warnings
