"""/api/t/{tenant}/prompts: versions, labels, diff, validation and the playground (`try`).

Read: members of the tenant (or an API key with prompts:read). Write, try: prompt editors / tenant admins
(or prompts:write). Every write is an audit event with before/after.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from backend.api.deps import PromptsRead, PromptsWrite, ServicesDep
from backend.api.limits import MAX_VERSION
from backend.api.params import Integer, IntegerOrNone
from backend.auth.api_keys import people_behind
from backend.auth.guard import allowed
from backend.chat.types import ChatRequest
from backend.container import Services
from backend.errors import Conflict, Forbidden, Invalid, NotFound
from backend.prompts.diff import diff_versions
from backend.prompts.release import approval_refusal, can_approve
from backend.prompts.schema import (
    KNOWN_VARIABLES,
    SYSTEM_FIELDS,
    Problem,
    PromptConfig,
    PromptValidationError,
    validate_version,
)
from backend.prompts.store import LABEL_RE, InvalidPromptName, PromptNotFound, PromptVersion, VersionConflict
from backend.tenants import TenantConfig

router = APIRouter(prefix="/api/t/{tenant}/prompts", tags=["prompts"])


PromptsReader = PromptsRead  # members read their tenant's prompts; an API key needs prompts:read or :write


# -- helpers ---------------------------------------------------------------------------------------------


def _tenant(services: Services, tenant: str) -> TenantConfig:
    cfg = services.registry.get(tenant)
    if cfg is None:
        raise NotFound(f"unknown tenant {tenant!r}", code="tenant_not_found")
    return cfg


def _assistant(services: Services, tenant: str, assistant: str) -> TenantConfig:
    cfg = _tenant(services, tenant)
    if cfg.assistant(assistant) is None:
        raise NotFound(f"{cfg.name} has no assistant {assistant!r} (assistants: "
                       f"{', '.join(a.name for a in cfg.assistants)})", code="assistant_not_found")
    try:
        services.prompts.assistant_dir(tenant, assistant)
    except InvalidPromptName as exc:
        raise NotFound(str(exc), code="assistant_not_found") from exc
    return cfg


def _get(services: Services, tenant: str, assistant: str, version: int) -> PromptVersion:
    try:
        return services.prompts.get(tenant, assistant, version)
    except PromptNotFound as exc:
        raise NotFound(f"{assistant} has no version {version}", code="version_not_found") from exc


def _invalid(problems: list[Problem], warnings: list[str] | None = None) -> Invalid:
    detail = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return Invalid(f"the prompt was not saved: {detail}", code="invalid_prompt",
                   extra={"problems": [p.public() for p in problems], "warnings": warnings or []})


def _tier_problems(cfg: TenantConfig, config: dict[str, Any]) -> list[Problem]:
    tier = config.get("tier")
    allowed = cfg.model_policy.allowed_tiers
    problems = []
    if isinstance(tier, str) and tier and tier not in allowed:
        problems.append(Problem("tier", f"{tier!r} is not allowed for {cfg.name} (allowed: {', '.join(allowed)})"))
    if config.get("model"):
        # The router picks the concrete model inside a tier (fallbacks, provider preference, budget), so
        # a pinned model would be silently ignored: refuse it rather than pretend.
        problems.append(Problem("model", f"choose a model tier instead of a specific model; {cfg.name} "
                                         f"allows {', '.join(allowed)}"))
    return problems


def _limits(name: str) -> tuple[float, float]:
    """A number setting's bounds, read from the schema (ge/le), so the wording cannot drift from the rule."""
    lo = hi = None
    for rule in PromptConfig.model_fields[name].metadata:
        lo = getattr(rule, "ge", lo)
        hi = getattr(rule, "le", hi)
    assert lo is not None and hi is not None
    return lo, hi


def _number_problem(name: str, value: Any) -> str:
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
    return [Problem(p.field, _number_problem(p.field, config.get(p.field)))
            if p.field in ("max_tokens", "temperature") else p for p in problems]


def _draft(cfg: TenantConfig, tenant: str, assistant: str, body: str, config: dict[str, Any],
           *, who: str, message: str = "draft") -> tuple[PromptVersion, list[str]]:
    """An unsaved version (number 0), validated exactly like a save."""
    meta = {k: v for k, v in config.items() if k not in SYSTEM_FIELDS}
    meta.update(author=who, created_at="draft", message=message)
    problems = _tier_problems(cfg, meta)
    try:
        parsed, report = validate_version(meta, body)
    except PromptValidationError as exc:
        raise _invalid(problems + _phrased(exc.problems, meta)) from None
    if problems:
        raise _invalid(problems)
    return PromptVersion(tenant=tenant, assistant=assistant, version=0, body=body,
                         config=parsed.front_matter()), report.warnings


def _tier_note(services: Services, cfg: TenantConfig, tier: Any, answered_by: str | None = None,
               model: str = "") -> str | None:
    """A prompt's tier that is not live is answered by another one (the chat does the same, silently): say so
    where the editor tries and reviews it."""
    if not isinstance(tier, str) or not tier or tier in services.llm.tiers():
        return None
    if answered_by is None:
        try:
            answered_by = services.llm.resolve_tier(tier, cfg.model_policy.allowed_tiers)
        except RuntimeError:  # the LLM service's NoModelAvailable
            return f"{tier} is not available now, and no other allowed tier is"
        return f"{tier} is not available now: until it is, answers come from {answered_by}"
    return f"{tier} is not available now: answered by {answered_by}" + (f" ({model})" if model else "")


def _history(services: Services, tenant: str, assistant: str) -> list[dict[str, Any]]:
    return list(reversed(services.prompts.label_history(tenant, assistant)))


# -- routes ----------------------------------------------------------------------------------------------


@router.get("")
def list_prompts(ctx: PromptsReader, services: ServicesDep) -> dict[str, Any]:
    cfg = _tenant(services, ctx.tenant)
    items = []
    for a in cfg.assistants:
        versions = services.prompts.versions(ctx.tenant, a.name)
        items.append({"name": a.name, "title": a.title, "description": a.description,
                      "labels": services.prompts.labels(ctx.tenant, a.name),
                      "latest": versions[-1] if versions else 0, "versions": len(versions)})
    return {"tenant": ctx.tenant, "tenant_name": cfg.name, "require_approval": cfg.require_approval,
            "assistants": items}


@router.get("/{assistant}")
def get_prompt(assistant: str, ctx: PromptsReader, services: ServicesDep) -> dict[str, Any]:
    cfg = _assistant(services, ctx.tenant, assistant)
    a = cfg.assistant(assistant)
    versions = [services.prompts.get(ctx.tenant, assistant, n).summary()
                for n in reversed(services.prompts.versions(ctx.tenant, assistant))]
    return {
        "name": assistant, "title": a.title, "description": a.description,
        "versions": versions, "latest": versions[0]["version"] if versions else 0,
        "labels": services.prompts.labels(ctx.tenant, assistant),
        "history": _history(services, ctx.tenant, assistant),
        "require_approval": cfg.require_approval,
        "variables_available": KNOWN_VARIABLES,
        "tiers": cfg.model_policy.allowed_tiers, "default_tier": cfg.model_policy.default_tier,
        "live_tiers": services.llm.tiers(), "tier_models": services.llm.tier_models(),
        "you": {"subject": ctx.principal.subject, "can_write": allowed(ctx.principal, ctx.tenant, "prompts:write"),
                "can_approve": can_approve(ctx.principal, cfg)},
    }


@router.get("/{assistant}/versions/{version}")
def get_version(assistant: str, version: Annotated[int, Path(ge=1, le=MAX_VERSION)], ctx: PromptsReader,
                services: ServicesDep) -> dict[str, Any]:
    _assistant(services, ctx.tenant, assistant)
    pv = _get(services, ctx.tenant, assistant, version)
    labels = services.prompts.labels(ctx.tenant, assistant)
    return {**pv.summary(), "body": pv.body, "config": pv.config,
            "labels": sorted(k for k, v in labels.items() if v == version)}


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    body: str = Field(max_length=40_000)
    config: dict[str, Any] = Field(default_factory=dict)
    message: str = Field("", max_length=500)
    base_version: Integer = Field(ge=0, le=MAX_VERSION,
                                  description="the version the editor started from (0 for the first)")


@router.post("/{assistant}/versions", status_code=201)
def create_version(assistant: str, data: VersionIn, ctx: PromptsWrite, services: ServicesDep,
                   request: Request) -> dict[str, Any]:
    cfg = _assistant(services, ctx.tenant, assistant)
    problems: list[Problem] = []
    if not data.message.strip():
        problems.append(Problem("message", "describe your change in a few words (it is shown in the history)"))
    if data.base_version > (latest := services.prompts.latest(ctx.tenant, assistant)):
        # Not a conflict: nobody saved after it, the version never existed (a stale or mistyped number).
        problems.append(Problem("base_version", f"version {data.base_version} does not exist; the latest is "
                                                f"{latest}: start from it"))
    try:  # the tenant's tier policy, the schema and the template: every problem at once
        _draft(cfg, ctx.tenant, assistant, data.body, data.config, who=ctx.principal.subject)
    except Invalid as exc:
        problems.extend(Problem(**p) for p in exc.extra["problems"])
    if problems:
        raise _invalid(problems)
    try:
        pv, report = services.prompts.create_version(
            ctx.tenant, assistant, body=data.body, config=data.config, message=data.message.strip(),
            author=ctx.principal.subject, author_for=ctx.principal.acting_for, base_version=data.base_version)
    except PromptValidationError as exc:
        raise _invalid(exc.problems) from None
    except VersionConflict as exc:
        newer = services.prompts.get(ctx.tenant, assistant, exc.latest) if exc.latest else None
        # `author_for`: a save made with an API key is its creator's, so the studio can say "you saved…".
        latest = {**newer.summary(), "author_for": newer.config.get("author_for")} if newer else None
        raise Conflict(
            f"version {exc.latest} was saved by {latest and latest['author']} after you started from version "
            f"{exc.base_version}; nothing was overwritten — compare with version {exc.latest} and save again "
            f"on top of it", code="version_conflict",
            extra={"latest_version": exc.latest, "latest": latest, "base_version": exc.base_version},
        ) from None
    before = services.prompts.get(ctx.tenant, assistant, data.base_version).summary() \
        if data.base_version else None
    services.audit.record("prompt_version_created", subject=ctx.principal.subject, tenant=ctx.tenant,
                          route=request.url.path, status=201,
                          detail={"assistant": assistant, "before": before, "after": pv.summary()})
    return {**pv.summary(), "body": pv.body, "config": pv.config, "warnings": report.warnings}


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    version: Integer = Field(ge=1, le=MAX_VERSION)
    create: StrictBool = False  # a label that does not exist yet (e.g. "canary"); without it a typo is refused


@router.put("/{assistant}/labels/{label}")
def move_label(assistant: str, label: Annotated[str, Path(json_schema_extra={"pattern": LABEL_RE.pattern})],
               data: LabelIn, ctx: PromptsWrite, services: ServicesDep,
               request: Request) -> dict[str, Any]:
    cfg = _assistant(services, ctx.tenant, assistant)
    target = _get(services, ctx.tenant, assistant, data.version)
    existing = services.prompts.labels(ctx.tenant, assistant)
    if label not in existing and label not in ("production", "staging") and not data.create:
        raise Invalid(f"{assistant} has no label {label!r} (it has: {', '.join(sorted(existing)) or 'none'}); send "
                      '"create": true to create it', code="unknown_label")
    # People, not credentials: a version saved with a key (or a key made by a key) is its owner's.
    authors = people_behind(db=services.db, names=(str(a) for a in (target.config.get("author"),
                                                                    target.config.get("author_for")) if a))
    refusal = approval_refusal(ctx.principal, cfg, label, authors)
    if refusal:
        services.audit.record("denied", subject=ctx.principal.subject, tenant=ctx.tenant, route=request.url.path,
                              status=403, reason="approval_required",
                              detail={"assistant": assistant, "label": label, "version": data.version})
        raise Forbidden(refusal, code="approval_required")
    try:
        move = services.prompts.move_label(ctx.tenant, assistant, label, data.version, who=ctx.principal.subject)
    except InvalidPromptName as exc:
        raise Invalid(str(exc), code="invalid_label") from None
    services.audit.record("prompt_label_moved", subject=ctx.principal.subject, tenant=ctx.tenant,
                          route=request.url.path, status=200,
                          detail={"assistant": assistant, "label": label, "before": move.before,
                                  "after": move.after})
    return {"label": label, "from": move.before, "to": move.after, "entry": move.entry,
            "labels": services.prompts.labels(ctx.tenant, assistant),
            "history": _history(services, ctx.tenant, assistant)}


@router.get("/{assistant}/diff")
def diff(assistant: str, ctx: PromptsReader, services: ServicesDep,
         from_: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
         to: Annotated[int, Query(ge=1, le=MAX_VERSION)]) -> dict[str, Any]:
    _assistant(services, ctx.tenant, assistant)
    return diff_versions(_get(services, ctx.tenant, assistant, from_), _get(services, ctx.tenant, assistant, to))


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    body: str = Field(max_length=40_000)
    config: dict[str, Any] = Field(default_factory=dict)
    base_version: Integer = Field(0, ge=0, le=MAX_VERSION)


@router.post("/{assistant}/preview")
def preview(assistant: str, data: PreviewIn, ctx: PromptsWrite, services: ServicesDep) -> JSONResponse:
    """Validate an unsaved draft and diff it against its base version (nothing is written)."""
    cfg = _assistant(services, ctx.tenant, assistant)
    try:
        draft, warnings = _draft(cfg, ctx.tenant, assistant, data.body, data.config, who=ctx.principal.subject)
    except Invalid as exc:
        return JSONResponse({"ok": False, "problems": exc.extra["problems"], "warnings": [], "diff": None})
    base = _get(services, ctx.tenant, assistant, data.base_version) if data.base_version else \
        PromptVersion(ctx.tenant, assistant, 0, "", {})
    if note := _tier_note(services, cfg, draft.config.get("tier")):
        warnings = [*warnings, note]
    return JSONResponse({"ok": True, "problems": [], "warnings": warnings, "diff": diff_versions(base, draft)})


class TryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    question: str = Field(min_length=1, max_length=4_000)
    version: IntegerOrNone = Field(None, ge=1, le=MAX_VERSION)
    body: str | None = Field(None, max_length=40_000)
    config: dict[str, Any] = Field(default_factory=dict)


@router.post("/{assistant}/try")
async def try_prompt(assistant: str, data: TryIn, ctx: PromptsWrite, services: ServicesDep) -> dict[str, Any]:
    """Answer a test question with a saved version or an unsaved draft, against the real knowledge base.
    Nothing is saved: no version, no label, no conversation; the model call is a usage row (channel `studio`),
    because it was paid for and counts against the tenant's budget like any other."""
    cfg = _assistant(services, ctx.tenant, assistant)
    warnings: list[str] = []
    if data.body is not None:
        prompt, warnings = _draft(cfg, ctx.tenant, assistant, data.body, data.config, who=ctx.principal.subject)
    elif data.version is not None:
        prompt = _get(services, ctx.tenant, assistant, data.version)
    else:
        raise Invalid("send either `body` (an unsaved draft, with its `config`) or `version`",
                      code="invalid_request")
    result = await services.chat.run(ctx.principal, ChatRequest(
        tenant=ctx.tenant, assistant=assistant, message=data.question, channel="studio",
        prompt_override=prompt))
    out = result.public()
    out["prompt_version"] = prompt.version or None
    out["draft"] = prompt.version == 0
    if note := _tier_note(services, cfg, prompt.config.get("tier"), result.tier, result.model):
        warnings = [note, *warnings]
    out["warnings"] = [*warnings, *out.get("warnings", [])]
    return out
