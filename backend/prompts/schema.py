"""What a prompt version file may contain: the front-matter schema and the template rules.

Validation happens on save, so a version that reaches `production` always renders: every placeholder is
declared, and every declared variable is one the chat pipeline provides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The variables the chat pipeline fills in (backend/chat/pipeline.py); a prompt may only declare these.
KNOWN_VARIABLES: dict[str, str] = {
    "user_name": "the name of the person chatting",
    "tenant_name": "the department's name",
    "today": "today's date (YYYY-MM-DD)",
    "context": "the passages retrieved from the department's knowledge base",
}
# Set by Atrium on save, never by the editor's form.
SYSTEM_FIELDS = ("author", "author_for", "created_at", "message")
EDITABLE_FIELDS = ("description", "tier", "model", "temperature", "max_tokens", "variables", "signoff", "answer_mode",
                   "grounding_check")
MAX_BODY_CHARS = 20_000

_TIER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_ANY_BRACES_RE = re.compile(r"\{\{(.*?)\}\}", re.S)


@dataclass
class Problem:
    field: str
    message: str

    def public(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class PromptValidationError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


class PromptConfig(BaseModel):
    """Front matter of a version file. Unknown keys are refused so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=300)
    tier: str | None = None
    model: str | None = Field(None, max_length=120)
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(768, ge=1, le=32_000)
    variables: list[str] = Field(default_factory=list)
    # Appended verbatim to every answer by the pipeline: deterministic, whatever the model does.
    signoff: str | None = Field(None, max_length=300)
    # How knowledge questions are answered (llm/answer_policy.py); unset = the tier's setting in models.yaml.
    answer_mode: Literal["grounded", "generative"] | None = None
    grounding_check: bool | None = None
    author: str = Field(min_length=1, max_length=200)
    # Saved with an API key: the person who created the key (the four-eyes rule counts them as the author).
    author_for: str | None = Field(None, max_length=200)
    created_at: str = Field(min_length=1, max_length=40)
    message: str = Field(min_length=1, max_length=500)

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str | None) -> str | None:
        if v is not None and not _TIER_RE.fullmatch(v):
            raise ValueError("must be a tier name such as local, fast or smart")
        return v

    @field_validator("variables")
    @classmethod
    def _variables(cls, v: list[str]) -> list[str]:
        unknown = [name for name in v if name not in KNOWN_VARIABLES]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not provided by Atrium "
                             f"(available: {', '.join(KNOWN_VARIABLES)})")
        if len(set(v)) != len(v):
            raise ValueError("a variable is listed twice")
        return v

    @field_validator("signoff", "description", "message")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.strip() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _tier_or_model(self) -> PromptConfig:
        if not self.tier and not self.model:
            raise ValueError("choose a model tier (or a model)")
        if self.signoff == "":
            self.signoff = None
        return self

    def front_matter(self) -> dict[str, Any]:
        """Stable key order, optional keys only when set (files stay small and diff well)."""
        data = self.model_dump()
        order = ("description", "tier", "model", "temperature", "max_tokens", "variables", "signoff", "answer_mode",
                 "grounding_check", *SYSTEM_FIELDS)
        return {k: data[k] for k in order if data[k] is not None}


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def check_template(body: str, declared: list[str] | None) -> ValidationReport:
    """Template syntax and variables: malformed braces, undeclared placeholders, unused declarations."""
    report = ValidationReport()
    if not body.strip():
        report.problems.append(Problem("body", "the prompt text is empty"))
        return report
    if len(body) > MAX_BODY_CHARS:
        report.problems.append(Problem("body", f"the prompt is {len(body)} characters; the limit is "
                                               f"{MAX_BODY_CHARS}"))
    consumed: list[tuple[int, int]] = []
    for m in _ANY_BRACES_RE.finditer(body):
        consumed.append(m.span())
        if not PLACEHOLDER_RE.fullmatch(m.group(0)):
            report.problems.append(Problem(
                "body", f"line {_line_of(body, m.start())}: {m.group(0)!r} is not a valid placeholder — "
                        "write {{name}} with letters, digits and underscores"))
    rest = list(body)
    for start, end in consumed:
        rest[start:end] = [" "] * (end - start)
    leftover = "".join(rest)
    for token, what in (("{{", "is opened but never closed with '}}'"), ("}}", "closes nothing")):
        idx = leftover.find(token)
        if idx >= 0:
            report.problems.append(Problem("body", f"line {_line_of(body, idx)}: {token!r} {what}"))
    used = {m.group(1): m.start() for m in reversed(list(PLACEHOLDER_RE.finditer(body)))}
    declared_set = set(declared or [])
    for name, pos in sorted(used.items(), key=lambda kv: kv[1]):
        if name not in declared_set:
            hint = ("declare it under Variables" if name in KNOWN_VARIABLES
                    else f"Atrium provides only {', '.join(KNOWN_VARIABLES)}")
            report.problems.append(Problem(
                "body", f"line {_line_of(body, pos)}: {{{{{name}}}}} is not a declared variable — {hint}"))
    for name in declared or []:
        if name not in used:
            report.warnings.append(f"variable {name!r} is declared but not used in the text")
    if "context" not in used:
        report.warnings.append("the text does not use {{context}}: answers will not see the knowledge base")
    return report


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = f"unknown setting (allowed: {', '.join(EDITABLE_FIELDS)})"
        out.append(Problem(loc, msg))
    return out


def validate_version(config: dict[str, Any], body: str) -> tuple[PromptConfig, ValidationReport]:
    """Raise PromptValidationError listing every problem at once (the editor fixes them in one go)."""
    problems: list[Problem] = []
    parsed: PromptConfig | None = None
    try:
        parsed = PromptConfig.model_validate(config)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
    declared = parsed.variables if parsed else [v for v in config.get("variables") or [] if isinstance(v, str)]
    report = check_template(body, declared)
    problems.extend(report.problems)
    if problems or parsed is None:
        raise PromptValidationError(problems)
    return parsed, report


class RenderError(ValueError):
    """A placeholder has no value, or is not declared: names the variable(s)."""


def render(body: str, variables: dict[str, Any], declared: list[str] | None = None) -> str:
    """Fill `{{name}}` placeholders. `declared` (the version's `variables`) restricts what may be used."""
    used = {m.group(1) for m in PLACEHOLDER_RE.finditer(body)}
    if declared is not None:
        undeclared = sorted(used - set(declared))
        if undeclared:
            raise RenderError(f"prompt uses undeclared variable(s): {', '.join(undeclared)} "
                              f"(declared: {', '.join(declared) or 'none'})")
    missing = sorted(used - set(variables))
    if missing:
        raise RenderError(f"no value for variable(s): {', '.join(missing)}")
    return PLACEHOLDER_RE.sub(lambda m: str(variables[m.group(1)]), body)
