"""The multipart form of POST /api/t/{tenant}/documents: read by the route itself, after the caller is authenticated
and authorized, never before.

FastAPI parses File/Form parameters before it solves a route's dependencies: an unauthenticated 200 MB upload was
read whole (to temporary files) before its 401. The route declares no body parameter, so the OpenAPI document's
request body is stated here (UPLOAD_OPENAPI), as FastAPI described it, and the fields are checked with the types
FastAPI checked them against (the same statuses and messages).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from fastapi import Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from backend.api.docs_statuses import TEXT
from backend.api.params import KB_NAME
from backend.api.unicode import lone_surrogate_at
from backend.errors import Invalid

# Starlette's limits, as FastAPI applied them: the body limit (backend/api/limits.py) is sized for
# ATRIUM_MAX_UPLOAD_FILES files plus form fields of up to 1 MiB each; past these a part is a 400 naming the limit.
MAX_FORM_FILES = 1000
MAX_FORM_FIELDS = 1000
MAX_FIELD_BYTES = 1024 * 1024

_FILE = {"type": "string", "contentMediaType": "application/octet-stream"}
UPLOAD_FORM = {"title": "Body_upload_documents_api_t__tenant__documents_post", "type": "object", "properties": {
    "files": {"title": "Files", "type": "array", "items": dict(_FILE), "description": "one or more files"},
    "file": {"title": "File", **_FILE, "description": "a single file (alternative to `files`)"},
    "kb": {"title": "Kb", "type": "string", "description": "knowledge base name (default: default)", **KB_NAME},
    "title": {"title": "Title", "type": "string", "description": "document title (one file only)"},
    "metadata": {"title": "Metadata", "type": "string", "description": "JSON object stored with each document"},
}}


class _CopiedOnRead(dict):
    """FastAPI merges a route's openapi_extra into each OpenAPI document it builds by reference, and the document is
    edited afterwards (backend/api/docs.py): every build (one per app) gets its own copy."""

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        return ((key, copy.deepcopy(value)) for key, value in super().items())


UPLOAD_OPENAPI: dict[str, Any] = _CopiedOnRead({
    "requestBody": {"content": {"multipart/form-data": {"schema": UPLOAD_FORM}}},
    # backend/api/docs_statuses.py adds a 400 for routes with a body parameter; this one reads its body itself.
    "responses": {"400": {"description": TEXT["400"],
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
})


class UploadForm(BaseModel):
    """The fields, typed as the File/Form parameters were: a text where a file belongs, or a file where a text
    does, is the same 422 as before."""

    files: list[UploadFile] | None = None
    file: UploadFile | None = None
    kb: str | None = None
    title: str | None = None
    metadata: str | None = None


def _empty_file(value: Any) -> bool:
    # A browser sends an empty filename and no bytes for a file input left empty: not a file.
    return isinstance(value, UploadFile) and value.filename == "" and value.size == 0


def _values(form: FormData) -> dict[str, Any]:
    """As FastAPI picked them: every `files` part, the last of any other field; an empty text or an empty file
    input is absent."""
    values: dict[str, Any] = {}
    if files := [f for f in form.getlist("files") if not _empty_file(f)]:
        values["files"] = files
    for name in ("file", "kb", "title", "metadata"):
        value = form.get(name)
        if value is not None and value != "" and not _empty_file(value):
            values[name] = value
    return values


async def read_upload_form(request: Request) -> tuple[FormData, UploadForm]:
    """The parsed form (the caller closes it) and its fields. A form that cannot be read is a 400 (Starlette's
    words, or app.py's for anything else the parser raises); a field of the wrong kind a 422."""
    try:
        form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS,
                                  max_part_size=MAX_FIELD_BYTES)
    except HTTPException:  # malformed multipart, a limit passed; or the body limit's 413 (already answered)
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. the client went away mid-body: FastAPI's 400, in app.py's words
        raise HTTPException(400, "There was an error parsing the body") from exc
    try:
        return form, UploadForm.model_validate(_values(form))
    except ValidationError as exc:
        await form.close()
        raise RequestValidationError(exc.errors()) from None


def parse_metadata(raw: str | None) -> dict[str, Any]:
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
