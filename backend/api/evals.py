"""/api/t/{tenant}/evals/{assistant}: an assistant's test cases (CRUD, YAML import and export, a case from a rated
exchange), runs of a prompt version or a draft over them, and the comparison of two runs.

All of it needs prompts:write (prompt editors, tenant admins, an API key with prompts:write): a run answers
questions with the tenant's models and is paid for like a studio try. The rules and the audit are the evaluation
service's (backend/evals/service.py); this module parses and shapes.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from backend.api.deps import PromptsWrite, ServicesDep
from backend.api.limits import MAX_VERSION
from backend.api.params import IntegerOrNone
from backend.errors import BadRequest, Invalid, PayloadTooLarge, UnsupportedMedia
from backend.evals.cases import RESERVED_IDS, CaseCreate
from backend.evals.service import EvalService


class _CaseId(Convertor):
    """A case id in a path: never `export`, `import` or `from-feedback`, so that PUT or DELETE on those routes is a
    405 naming their one method, not a case that is not found (the routes' regexes say which methods a path has)."""

    regex = r"(?!(?:" + "|".join(RESERVED_IDS) + r")(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("case_id", _CaseId())
router = APIRouter(prefix="/api/t/{tenant}/evals/{assistant}", tags=["evals"])
MAX_IMPORT_BYTES = 1_000_000
RunId = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


# The YAML set, as export writes it and import reads it (each case as CaseCreate, with an optional `id`).
SET_SCHEMA = {"type": "object", "required": ["cases"], "description": "an assistant's test set (README \"Evaluating "
              "prompt changes\")", "properties": {"assistant": {"type": "string"},
                                                  "cases": {"type": "array", "items": {"type": "object"}}}}


def _evals(services: Any) -> EvalService:
    assert services.evals is not None
    return services.evals


@router.get("/cases")
def list_cases(assistant: str, ctx: PromptsWrite, services: ServicesDep) -> dict[str, Any]:
    return {"cases": _evals(services).cases(ctx.tenant, assistant)}


@router.post("/cases", status_code=201)
def create_case(assistant: str, data: CaseCreate, ctx: PromptsWrite, services: ServicesDep,
                request: Request) -> dict[str, Any]:
    return _evals(services).create_case(ctx.principal, ctx.tenant, assistant, data, route=request.url.path)


@router.get("/cases/export", response_class=PlainTextResponse,
            responses={200: {"content": {"text/yaml": {"schema": SET_SCHEMA}}}})
def export_cases(assistant: str, ctx: PromptsWrite, services: ServicesDep) -> Response:
    text = _evals(services).export_yaml(ctx.tenant, assistant)
    return Response(text, media_type="text/yaml; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{assistant}.yaml"'})


class ImportOut(BaseModel):
    added: int
    updated: int
    unchanged: int


IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "text/yaml": {"schema": SET_SCHEMA},
    "application/json": {"schema": {"type": "object", "required": ["yaml"], "additionalProperties": False,
                                    "properties": {"yaml": {"type": "string"}}}}}}}


@router.post("/cases/import", openapi_extra=IMPORT_BODY, responses={200: {"model": ImportOut}})
async def import_cases(assistant: str, ctx: PromptsWrite, services: ServicesDep, request: Request) -> dict[str, int]:
    """Cases whose id the set has are updated, the others added; nothing is deleted. One bad case: nothing is
    imported, and the 422 lists every problem."""
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise PayloadTooLarge(f"the file is {len(raw):,} bytes; the limit is {MAX_IMPORT_BYTES:,}")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text", code="invalid_body") from None
    if kind == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            raise BadRequest("the body is not valid JSON", code="invalid_body") from None
        if not isinstance(data, dict) or set(data) != {"yaml"} or not isinstance(data["yaml"], str):
            raise Invalid('send {"yaml": "<the file>"}, or the file itself as text/yaml', code="invalid_body")
        text = data["yaml"]
    elif kind not in ("text/yaml", "application/yaml", "application/x-yaml", "text/plain"):
        raise UnsupportedMedia(f"send the file as text/yaml (or JSON {{\"yaml\": ...}}), not {kind or 'no type'}",
                               code="unsupported_media_type")
    # In a worker thread: parsing and checking a megabyte of YAML takes seconds, which would stall every other
    # request (and every streaming answer) of this process on the event loop.
    return await run_in_threadpool(_evals(services).import_yaml, ctx.principal, ctx.tenant, assistant, text,
                                   route=request.url.path)


TurnId = Annotated[int, Field(ge=1, le=2**31 - 1, description="the rated answer's turn (the Feedback tab's "
                                                                  "`turn_id`)")]


class FromFeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turn_id: TurnId
    case: CaseCreate | None = Field(None, description="the case as the editor wrote it from `GET "
                                                      ".../cases/from-feedback` (without it: the prefilled case, "
                                                      "which expects nothing yet)")


@router.get("/cases/from-feedback")
def draft_from_feedback(assistant: str, turn_id: Annotated[int, Query(ge=1, le=2**31 - 1)], ctx: PromptsWrite,
                        services: ServicesDep) -> dict[str, Any]:
    """The case a rated answer suggests (its question, earlier turns, and a note on the rating), not stored
    (`"id": null, "stored": false`): fill in what a good answer states, then POST it here with the `turn_id`."""
    return _evals(services).draft_from_feedback(ctx.tenant, assistant, turn_id)


@router.post("/cases/from-feedback", status_code=201)
def case_from_feedback(assistant: str, data: FromFeedbackIn, ctx: PromptsWrite, services: ServicesDep,
                       request: Request) -> dict[str, Any]:
    """Stores a case made from a rated answer (its `source` names the turn): `case` as the editor wrote it."""
    return _evals(services).case_from_feedback(ctx.principal, ctx.tenant, assistant, data.turn_id, data=data.case,
                                               route=request.url.path)


@router.put("/cases/{case_id:case_id}")
def update_case(assistant: str, case_id: str, data: CaseCreate, ctx: PromptsWrite, services: ServicesDep,
                request: Request) -> dict[str, Any]:
    return _evals(services).update_case(ctx.principal, ctx.tenant, assistant, case_id, data, route=request.url.path)


class DeletedOut(BaseModel):
    deleted: str = Field(description="the id of the case deleted")


@router.delete("/cases/{case_id:case_id}")
def delete_case(assistant: str, case_id: str, ctx: PromptsWrite, services: ServicesDep,
                request: Request) -> DeletedOut:
    """200 with the id (not 204: every success of this API has a body, so clients parse one shape)."""
    _evals(services).delete_case(ctx.principal, ctx.tenant, assistant, case_id, route=request.url.path)
    return DeletedOut(deleted=case_id)


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: IntegerOrNone = Field(None, ge=1, le=MAX_VERSION, description="a saved version (or send `body`)")
    body: str | None = Field(None, max_length=40_000, description="an unsaved draft's text (with its `config`)")
    config: dict[str, Any] = Field(default_factory=dict)
    tier: str | None = Field(None, max_length=32, description="the tier to answer on (default: the prompt's)")
    judge: bool = Field(False, description="also grade facts and groundedness with a provider model (the run "
                                           "names it; its calls are internal usage)")


@router.post("/runs", status_code=202)
async def start_run(assistant: str, data: RunIn, ctx: PromptsWrite, services: ServicesDep,
                    request: Request) -> dict[str, Any]:
    """Starts a run in the background: poll `GET .../runs/{run_id}` for its progress and results."""
    if (data.version is None) == (data.body is None):
        raise Invalid("send either `version` (a saved version) or `body` (an unsaved draft, with its `config`)",
                      code="invalid_request")
    return _evals(services).start_run(ctx.principal, ctx.tenant, assistant, version=data.version, body=data.body,
                                      config=data.config, tier=data.tier, judge=data.judge, route=request.url.path)


@router.get("/runs")
def list_runs(assistant: str, ctx: PromptsWrite, services: ServicesDep,
              limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    return {"runs": _evals(services).runs(ctx.tenant, assistant, limit=limit)}


@router.get("/runs/{run_id}")
def get_run(assistant: str, run_id: str, ctx: PromptsWrite, services: ServicesDep, request: Request) -> dict[str, Any]:
    return _evals(services).run(ctx.tenant, assistant, run_id, principal=ctx.principal, route=request.url.path)


@router.post("/runs/{run_id}/resume", status_code=202)
async def resume_run(assistant: str, run_id: str, ctx: PromptsWrite, services: ServicesDep,
                     request: Request) -> dict[str, Any]:
    return _evals(services).resume_run(ctx.principal, ctx.tenant, assistant, run_id, route=request.url.path)


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(assistant: str, run_id: str, ctx: PromptsWrite, services: ServicesDep, request: Request,
                     response: Response) -> dict[str, Any]:
    """Stops a queued or running run, in whichever process runs it: 202 with the run, now `cancelled`. The case
    being answered is finished and kept, no other is started (poll `GET .../runs/{run_id}`: `done` may grow by
    one); the cases checked so far stay, and `.../resume` answers the rest later, like a failed run."""
    run, cancelled = _evals(services).cancel_run(ctx.principal, ctx.tenant, assistant, run_id, route=request.url.path)
    if not cancelled:
        response.status_code = 200
    return run


@router.get("/compare")
def compare(assistant: str, a: RunId, b: RunId, ctx: PromptsWrite, services: ServicesDep,
            request: Request) -> dict[str, Any]:
    return _evals(services).compare(ctx.tenant, assistant, a, b, principal=ctx.principal, route=request.url.path)
