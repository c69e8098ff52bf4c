"""Knowledge-base documents: upload (202, ingested in the background), list, status, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from backend.api.deps import IngestAccess, RetrievalAccess, ServicesDep, TenantContext, client_ip
from backend.api.knowledge_models import (
    DocumentDeleted,
    DocumentList,
    DocumentPublic,
    DocumentStatus,
    KnowledgeBases,
    ReindexQueued,
    UploadAccepted,
)
from backend.api.limits import MAX_OFFSET
from backend.api.params import KB_NAME
from backend.api.upload_form import UPLOAD_OPENAPI, UploadForm, parse_metadata, read_upload_form
from backend.container import Services
from backend.errors import Invalid
from backend.knowledge.service import UploadFile as KbFile

router = APIRouter(prefix="/api/t/{tenant}", tags=["knowledge"])


@router.post("/documents", status_code=202, openapi_extra=UPLOAD_OPENAPI,
             responses={202: {"model": UploadAccepted, "description": "the accepted documents, and the refused"}})
async def upload_documents(request: Request, ctx: IngestAccess, services: ServicesDep):
    """multipart/form-data with one or more `files` (or `file`). 202 lists the accepted documents (poll
    GET /documents/{id} for their status) and, per file, why any others were refused."""
    # The body is read here, after IngestAccess: a caller who may not upload is answered before any of it is; and
    # a tenant with `limits.uploads` uploads in progress here too (a 429), before its body fills memory and disk.
    slot = services.inflight.upload(ctx.tenant) if services.inflight else None
    try:
        form, fields = await read_upload_form(request)
        try:
            return await _upload(request, ctx, services, fields)
        finally:
            await form.close()
    finally:
        if slot is not None:
            slot.release()


async def _upload(request: Request, ctx: TenantContext, services: Services,
                  form: UploadForm) -> dict[str, Any] | JSONResponse:
    uploads = [*(form.files or []), *([form.file] if form.file is not None else [])]
    if not uploads:
        raise Invalid("send one or more files as multipart/form-data in the `files` field", code="no_files")
    most = services.settings.max_upload_files
    if len(uploads) > most:  # the body limit (backend/api/limits.py) is sized for this many
        raise Invalid(f"{len(uploads)} files in one request; the limit is {most} (ATRIUM_MAX_UPLOAD_FILES): send "
                      "them in several requests", code="too_many_files")
    meta = parse_metadata(form.metadata)
    limit = services.knowledge.max_upload_bytes
    items = []
    for upload in uploads:
        data = await upload.read(limit + 1)  # one byte over is enough to say "too large"
        items.append(KbFile(filename=upload.filename, data=data))
        await upload.close()
    result = await asyncio.to_thread(services.knowledge.upload, ctx.principal, ctx.tenant, items, kb=form.kb,
                                     metadata=meta, title=form.title if len(items) == 1 else None,
                                     route=request.url.path)
    if not result["documents"]:
        first = result["errors"][0]
        statuses = {e["status"] for e in result["errors"]}
        status = first["status"] if len(statuses) == 1 else 422
        detail = first["detail"] if len(result["errors"]) == 1 else "none of the files could be accepted"
        return JSONResponse({"error": first["error"] if len(statuses) == 1 else "no_file_accepted",
                             "detail": detail, **result}, status_code=status)
    return result


# The routes return the service's dicts; `responses` documents them without a second conversion per answer.
@router.get("/documents", responses={200: {"model": DocumentList}})
async def list_documents(
    ctx: RetrievalAccess, services: ServicesDep,
    kb: Annotated[str | None, Query(json_schema_extra=KB_NAME)] = None,
    status: DocumentStatus | None = None,  # ?status=foo is a 422
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
):
    docs = await asyncio.to_thread(services.knowledge.list_documents, ctx.principal, ctx.tenant, kb=kb,
                                   status=status, limit=limit, offset=offset)
    return {"documents": docs}


@router.get("/documents/{document_id}", responses={200: {"model": DocumentPublic}})
async def get_document(document_id: str, ctx: RetrievalAccess, services: ServicesDep):
    return await asyncio.to_thread(services.knowledge.get_document, ctx.principal, ctx.tenant, document_id)


@router.delete("/documents/{document_id}",
               responses={200: {"model": DocumentDeleted, "description": "deleted"},
                          202: {"model": DocumentDeleted, "description": "accepted: a busy worker finishes the "
                                                                          "deletion (GET then answers 404)"}})
async def delete_document(request: Request, document_id: str, ctx: IngestAccess, services: ServicesDep):
    result = await asyncio.to_thread(services.knowledge.delete_document, ctx.principal, ctx.tenant, document_id,
                                     route=request.url.path, ip=client_ip(request))
    # 200 when gone; 202 when a busy worker will finish the deletion (GET then answers 404).
    return JSONResponse(result, status_code=200 if result["deleted"] else 202)


class ReindexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_failed: StrictBool = Field(False, description="also the failed documents (a temporary failure, retried); "
                                                    "by default only the ready ones are chunked and embedded again")


@router.post("/reindex", status_code=202, responses={202: {"model": ReindexQueued}})
async def reindex(request: Request, ctx: IngestAccess, services: ServicesDep, body: ReindexRequest | None = None):
    """Queue the tenant's documents to be chunked and embedded again from their stored files (as `atrium
    reindex`); poll GET /documents for their status. Audited (`documents_reindexed`)."""
    queued = await asyncio.to_thread(services.knowledge.reindex, ctx.principal, ctx.tenant,
                                     route=request.url.path, include_failed=bool(body and body.include_failed))
    return {"queued": len(queued), "documents": [{"id": i, "filename": f} for i, f in queued.items()]}


@router.post("/documents/{document_id}/reindex", status_code=202, responses={202: {"model": DocumentPublic}})
async def reindex_document(request: Request, document_id: str, ctx: IngestAccess, services: ServicesDep):
    """Queue one ready or failed document to be chunked and embedded again from its stored file (409 while it is
    being read); poll GET /documents/{id} for its status. Audited (`documents_reindexed`)."""
    return await asyncio.to_thread(services.knowledge.reindex_document, ctx.principal, ctx.tenant, document_id,
                                   route=request.url.path)


@router.get("/knowledge-bases", responses={200: {"model": KnowledgeBases}})
async def knowledge_bases(ctx: RetrievalAccess, services: ServicesDep):
    """The tenant's knowledge bases and the knowledge_id to give Dify for each."""
    return {"knowledge_bases": await asyncio.to_thread(services.knowledge.knowledge_bases, ctx.principal,
                                                       ctx.tenant)}
