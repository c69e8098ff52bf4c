"""Dify's External Knowledge API: POST /api/t/{tenant}/dify/retrieval (Dify appends /retrieval to the
endpoint `{public URL}/api/t/{tenant}/dify` it is registered with).

Dify's contract has its own error shape, `{"error_code", "error_msg"}` (1001 malformed Authorization
header, 1002 authorization failed, 2001 knowledge base not found), so this route runs the shared
authentication dependencies itself and reshapes their refusals. Every refusal is audited. A
knowledge_id of another tenant is "not found", exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.api.deps import ServicesDep, client_ip, require
from backend.api.params import Integer, Number
from backend.auth.guard import Denial
from backend.container import Services
from backend.errors import AtriumError
from backend.knowledge import metadata_filter
from backend.knowledge.service import check_kb

router = APIRouter(prefix="/api/t/{tenant}/dify", tags=["dify"])


class RetrievalSetting(BaseModel):
    top_k: Integer = Field(ge=1, le=100)
    score_threshold: Number = Field(0.0, ge=0.0, le=1.0)


class RetrievalIn(BaseModel):
    knowledge_id: str = Field(min_length=1, max_length=200)
    query: str = Field(min_length=1, max_length=4000)
    retrieval_setting: RetrievalSetting
    metadata_condition: dict[str, Any] | None = None


class RecordMetadata(BaseModel):
    """Where the passage comes from, and the document's own metadata (from its upload) beside it."""

    model_config = ConfigDict(extra="allow")

    path: str = Field(description="the document's file name")
    document_id: str
    chunk_id: str
    kb: str
    knowledge_id: str = Field(description="as the request gave it")
    page: int | None = Field(None, description="its page, in a PDF (left out otherwise)")
    section: str | None = Field(None, description="the heading it is under (left out when none)")


class RetrievalRecord(BaseModel):
    content: str = Field(description="the passage")
    score: float = Field(description="relevance, 0 to 1")
    title: str = Field(description="the document's title")
    metadata: RecordMetadata


class RetrievalOut(BaseModel):
    """Dify's External Knowledge API answer: the passages, best first."""

    records: list[RetrievalRecord]


def _error(status: int, code: int, message: str, reason: str = "invalid_request",
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error_code": code, "error_msg": message, "error": reason, "detail": message},
                        status_code=status, headers=headers)


def _refuse(request: Request, services: Services, *, status: int, code: int, message: str, reason: str,
            tenant: str, subject: str | None = None, detail: dict | None = None) -> JSONResponse:
    """A refusal in Dify's shape, recorded by the access guard like every other one."""
    services.access.record(Denial(reason, message, status, {"dify_error_code": code, **(detail or {})}),
                           subject=subject, tenant=tenant, route=request.url.path, ip=client_ip(request))
    return _error(status, code, message, reason)


# `responses` documents the dict the route returns without converting each answer again.
@router.post("/retrieval", responses={200: {"model": RetrievalOut}})
async def dify_retrieval(tenant: str, request: Request, services: ServicesDep):
    try:
        # The same verification as every tenant route (API key, IdP JWT or session; URL, X-Tenant-ID and
        # credentials agree; the `retrieval` permission), each refusal audited there.
        ctx = await require("retrieval")(request, tenant)
    except AtriumError as exc:
        if exc.code in ("malformed_authorization", "not_authenticated"):
            dify_code, message = 1001, "Invalid Authorization header format. Expected 'Bearer <api-key>' format."
        else:
            dify_code, message = 1002, f"Authorization failed: {exc.message}"
        # Dify reads error_code/error_msg; Atrium's own {"error", "detail"} ride along for other clients.
        return JSONResponse({"error_code": dify_code, "error_msg": message, "error": exc.code,
                             "detail": exc.message, **(exc.extra if exc.status_code == 421 else {})},
                            status_code=exc.status_code, headers=exc.headers)
    principal = ctx.principal

    try:
        body = RetrievalIn.model_validate(await request.json())
    except RecursionError:  # [[[[... 200,000 deep: no JSON decoder goes there
        return _error(400, 400, "Invalid request: the JSON is nested too deeply")
    except ValueError as exc:  # JSON decode errors and pydantic ValidationError
        problems = exc.errors() if isinstance(exc, ValidationError) else [{"loc": (), "msg": str(exc)}]
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in problems)
        return _error(400, 400, f"Invalid request: {message}")
    if body.metadata_condition is not None:
        try:  # a malformed request like the rest of the body: 400, before anything is searched
            metadata_filter.validate(body.metadata_condition)
        except AtriumError as exc:
            return _error(400, 400, f"Invalid request: metadata_condition: {exc.message}", exc.code)
        except RecursionError:
            return _error(400, 400, "Invalid request: metadata_condition is nested too deeply")

    kb = _knowledge_base(body.knowledge_id, tenant)
    bases = {b["kb"] for b in services.knowledge.knowledge_bases(principal, tenant)} if kb else set()
    if kb is None or kb not in bases:
        return _refuse(request, services, status=404, code=2001, reason="knowledge_not_found", tenant=tenant,
                       subject=principal.subject, detail={"knowledge_id": body.knowledge_id[:200]},
                       message="The knowledge base does not exist.")
    try:
        hits = await services.knowledge.search(principal, tenant, body.query, top_k=body.retrieval_setting.top_k,
                                               kb=kb, metadata_condition=body.metadata_condition,
                                               min_score=body.retrieval_setting.score_threshold)
    except AtriumError as exc:
        return _error(exc.status_code, exc.status_code, exc.message, exc.code, exc.headers)  # a 429's Retry-After
    docs = services.knowledge.document_titles(tenant, {h.document_id for h in hits})
    records = []
    for hit in hits:
        doc = docs.get(hit.document_id)
        metadata: dict[str, Any] = {"path": doc.filename if doc else hit.title, "document_id": hit.document_id,
                                    "chunk_id": hit.id, "kb": hit.kb, "knowledge_id": body.knowledge_id}
        if hit.page is not None:
            metadata["page"] = hit.page
        if hit.section:
            metadata["section"] = hit.section
        if doc is not None:
            metadata.update({k: v for k, v in doc.doc_metadata.items() if k not in metadata and k != "title_source"})
        records.append({"content": hit.text, "score": hit.score, "title": hit.title, "metadata": metadata})
    return {"records": records}


def _knowledge_base(knowledge_id: str, tenant: str) -> str | None:
    """`<tenant>/<kb>` (as listed by GET /knowledge-bases) or a bare kb name of the caller's tenant."""
    owner, sep, kb = knowledge_id.strip().partition("/")
    if not sep:
        owner, kb = tenant, owner
    if owner != tenant:
        return None
    try:
        return check_kb(kb)
    except AtriumError:
        return None
