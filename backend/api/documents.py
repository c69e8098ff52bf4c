"""Knowledge-base documents: upload (202, ingested in the background), list, status, delete."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from backend.api.deps import IngestAccess, RetrievalAccess, ServicesDep, client_ip
from backend.api.limits import MAX_OFFSET
from backend.api.params import KB_NAME
from backend.api.unicode import lone_surrogate_at
from backend.errors import Invalid
from backend.knowledge.service import UploadFile as KbFile

router = APIRouter(prefix="/api/t/{tenant}", tags=["knowledge"])
DocumentStatus = Literal["queued", "parsing", "embedding", "ready", "failed", "deleting"]  # ?status=foo is a 422


def _metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Invalid(f"metadata must be a JSON object: {exc.msg}", code="invalid_metadata") from exc
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) or v is None
                                              for v in value.values()):
        raise Invalid("metadata must be a JSON object of strings, numbers or booleans", code="invalid_metadata")
    if where := lone_surrogate_at(value, "metadata"):
        raise Invalid(f"{where} contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is "
                      "not valid Unicode text; send the character as a surrogate pair or remove it",
                      code="invalid_metadata")
    return {str(k)[:100]: v for k, v in value.items()}


@router.post("/documents", status_code=202)
async def upload_documents(
    request: Request, ctx: IngestAccess, services: ServicesDep,
    files: Annotated[list[UploadFile] | None, File(description="one or more files")] = None,
    file: Annotated[UploadFile | None, File(description="a single file (alternative to `files`)")] = None,
    kb: Annotated[str | None, Form(description="knowledge base name (default: default)",
                                   json_schema_extra=KB_NAME)] = None,
    title: Annotated[str | None, Form(description="document title (one file only)")] = None,
    metadata: Annotated[str | None, Form(description="JSON object stored with each document")] = None,
):
    """multipart/form-data with one or more `files` (or `file`). 202 lists the accepted documents (poll
    GET /documents/{id} for their status) and, per file, why any others were refused."""
    uploads = [*(files or []), *([file] if file is not None else [])]
    if not uploads:
        raise Invalid("send one or more files as multipart/form-data in the `files` field", code="no_files")
    most = services.settings.max_upload_files
    if len(uploads) > most:  # the body limit (backend/api/limits.py) is sized for this many
        raise Invalid(f"{len(uploads)} files in one request; the limit is {most} (ATRIUM_MAX_UPLOAD_FILES): send "
                      "them in several requests", code="too_many_files")
    meta = _metadata(metadata)
    limit = services.knowledge.max_upload_bytes
    items = []
    for upload in uploads:
        data = await upload.read(limit + 1)  # one byte over is enough to say "too large"
        items.append(KbFile(filename=upload.filename, data=data))
        await upload.close()
    result = await asyncio.to_thread(services.knowledge.upload, ctx.principal, ctx.tenant, items, kb=kb,
                                     metadata=meta, title=title if len(items) == 1 else None,
                                     route=request.url.path)
    if not result["documents"]:
        first = result["errors"][0]
        statuses = {e["status"] for e in result["errors"]}
        status = first["status"] if len(statuses) == 1 else 422
        detail = first["detail"] if len(result["errors"]) == 1 else "none of the files could be accepted"
        return JSONResponse({"error": first["error"] if len(statuses) == 1 else "no_file_accepted",
                             "detail": detail, **result}, status_code=status)
    return result


@router.get("/documents")
async def list_documents(
    ctx: RetrievalAccess, services: ServicesDep,
    kb: Annotated[str | None, Query(json_schema_extra=KB_NAME)] = None, status: DocumentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
):
    docs = await asyncio.to_thread(services.knowledge.list_documents, ctx.principal, ctx.tenant, kb=kb,
                                   status=status, limit=limit, offset=offset)
    return {"documents": docs}


@router.get("/documents/{document_id}")
async def get_document(document_id: str, ctx: RetrievalAccess, services: ServicesDep):
    return await asyncio.to_thread(services.knowledge.get_document, ctx.principal, ctx.tenant, document_id)


@router.delete("/documents/{document_id}")
async def delete_document(request: Request, document_id: str, ctx: IngestAccess, services: ServicesDep):
    result = await asyncio.to_thread(services.knowledge.delete_document, ctx.principal, ctx.tenant, document_id)
    services.audit.record("document_deleted", subject=ctx.principal.subject, tenant=ctx.tenant,
                          route=request.url.path, ip=client_ip(request), detail={"document_id": document_id})
    # 200 when gone; 202 when a busy worker will finish the deletion (GET then answers 404).
    return JSONResponse(result, status_code=200 if result["deleted"] else 202)


@router.get("/knowledge-bases")
async def knowledge_bases(ctx: RetrievalAccess, services: ServicesDep):
    """The tenant's knowledge bases and the knowledge_id to give Dify for each."""
    return {"knowledge_bases": await asyncio.to_thread(services.knowledge.knowledge_bases, ctx.principal,
                                                       ctx.tenant)}
