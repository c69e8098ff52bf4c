"""/api/t/{tenant}/prompts: versions, labels, diff, validation and the playground (`try`).

Read: members of the tenant (or an API key with prompts:read). Write, try: prompt editors / tenant admins
(or prompts:write). The rules, and the audit event of every write (with before/after), are the prompt service's
(backend/prompts/service.py); this module parses and shapes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from backend.api.deps import PromptsRead, PromptsWrite, ServicesDep
from backend.api.limits import MAX_VERSION
from backend.api.params import Integer, IntegerOrNone
from backend.chat.types import ChatRequest
from backend.prompts.store import LABEL_RE

router = APIRouter(prefix="/api/t/{tenant}/prompts", tags=["prompts"])


PromptsReader = PromptsRead  # members read their tenant's prompts; an API key needs prompts:read or :write


@router.get("")
def list_prompts(ctx: PromptsReader, services: ServicesDep) -> dict[str, Any]:
    return services.prompt_service.overview(ctx.tenant)


@router.get("/{assistant}")
def get_prompt(assistant: str, ctx: PromptsReader, services: ServicesDep) -> dict[str, Any]:
    return services.prompt_service.assistant(ctx.principal, ctx.tenant, assistant)


@router.get("/{assistant}/versions/{version}")
def get_version(assistant: str, version: Annotated[int, Path(ge=1, le=MAX_VERSION)], ctx: PromptsReader,
                services: ServicesDep) -> dict[str, Any]:
    return services.prompt_service.version(ctx.tenant, assistant, version)


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
    return services.prompt_service.save(ctx.principal, ctx.tenant, assistant, body=data.body, config=data.config,
                                        message=data.message, base_version=data.base_version,
                                        route=request.url.path)


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    version: Integer = Field(ge=1, le=MAX_VERSION)
    create: StrictBool = False  # a label that does not exist yet (e.g. "canary"); without it a typo is refused
    override_reason: str | None = Field(
        None, max_length=1000, description="a tenant admin promoting to production past a closed release gate says "
                                           "why (audited); without it a closed gate is a 409 `release_gate`")


@router.put("/{assistant}/labels/{label}")
def move_label(assistant: str, label: Annotated[str, Path(json_schema_extra={"pattern": LABEL_RE.pattern})],
               data: LabelIn, ctx: PromptsWrite, services: ServicesDep,
               request: Request) -> dict[str, Any]:
    return services.prompt_service.move_label(ctx.principal, ctx.tenant, assistant, label, version=data.version,
                                              create=data.create, route=request.url.path,
                                              override_reason=data.override_reason)


@router.get("/{assistant}/diff")
def diff(assistant: str, ctx: PromptsReader, services: ServicesDep,
         from_: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
         to: Annotated[int, Query(ge=1, le=MAX_VERSION)]) -> dict[str, Any]:
    return services.prompt_service.diff(ctx.tenant, assistant, from_, to)


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    body: str = Field(max_length=40_000)
    config: dict[str, Any] = Field(default_factory=dict)
    base_version: Integer = Field(0, ge=0, le=MAX_VERSION)


class PreviewOut(BaseModel):
    ok: bool = Field(description="false: the draft cannot be saved as it is (see `problems`)")
    problems: list[dict[str, Any]] = Field(description="what stops a save, each with where and what to change")
    warnings: list[str] = Field(description="what a save would allow but an editor should know")
    diff: dict[str, Any] | None = Field(description="the draft against its base version (null when not ok)")


@router.post("/{assistant}/preview", responses={200: {"model": PreviewOut}})
def preview(assistant: str, data: PreviewIn, ctx: PromptsWrite, services: ServicesDep) -> JSONResponse:
    """Validate an unsaved draft and diff it against its base version (nothing is written)."""
    return JSONResponse(services.prompt_service.preview(ctx.principal, ctx.tenant, assistant, body=data.body,
                                                        config=data.config, base_version=data.base_version))


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
    prompts = services.prompt_service
    # The chat answers (the prompts package sits below it): the service picks the version and words the warnings.
    trial = prompts.trial(ctx.principal, ctx.tenant, assistant, version=data.version, body=data.body,
                          config=data.config)
    result = await services.chat.run(ctx.principal, ChatRequest(
        tenant=ctx.tenant, assistant=assistant, message=data.question, channel="studio",
        prompt_override=trial.prompt))
    return prompts.trial_reply(trial, result.public(), tier=result.tier, model=result.model)
