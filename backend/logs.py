"""JSON-lines logging in the shape Google Cloud Logging reads: one object per line, `severity` and `message` keys,
INFO and below on stdout, WARNING and above on stderr (GKE shows anything on stderr without a severity as ERROR).

Every line logged while a request is handled carries its `request_id` and `trace_id` (a contextvar set by the
request middleware, backend/api/observe.py; the trace id is the OpenTelemetry span's when tracing is on). Any
`extra={...}` fields are merged in.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from backend.tracing import current_ids

# Record attributes that are not fields of ours; libraries' decorations (uvicorn's ANSI-coloured copy of the
# message, LiteLLM's redaction marker) are noise in a JSON line.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message", "litellm_redacted"}
# Cloud Logging's LogSeverity names for Python's levels.
_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO", "DEBUG": "DEBUG"}


@dataclass
class RequestInfo:
    """What the lines and metrics of one request share. Mutable: the tenant is learnt when the principal is verified
    (backend/api/deps.py), deeper than where the middleware set the contextvar."""

    request_id: str
    trace_id: str
    tenant: str | None = None


request_info: ContextVar[RequestInfo | None] = ContextVar("atrium_request", default=None)


class JsonFormatter(logging.Formatter):
    def __init__(self, *, project: str | None = None) -> None:
        super().__init__()
        self.project = project  # Google Cloud project: the trace field Cloud Logging links to Cloud Trace

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "logger": record.name,
            "message": _access_line(record) if record.name == "uvicorn.access" else record.getMessage(),
        }
        info = request_info.get()
        ids = current_ids()
        if info is not None:
            out["request_id"] = info.request_id
        trace_id = ids[0] if ids else (info.trace_id if info is not None else None)
        if trace_id:
            out["trace_id"] = trace_id
            if ids:
                out["span_id"] = ids[1]
            if self.project:
                out["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{trace_id}"
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _access_line(record: logging.LogRecord) -> str:
    """uvicorn's access line without the query string's values: they carry the IdP's authorization `code` and
    `state` on the sign-in callback, and whatever secret a caller put in a URL (`?api_key=...`). Names are kept."""
    args = record.args
    if not (isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str)):
        return record.getMessage()
    path, sep, query = args[2].partition("?")
    if sep:
        path += "?" + "&".join(f"{part.partition('=')[0]}=…" if "=" in part else part for part in query.split("&"))
    try:
        return str(record.msg) % (*args[:2], path, *args[3:])
    except (TypeError, ValueError):  # not uvicorn's format: its template alone, never the raw query
        return str(record.msg)


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def setup_logging(level: str = "INFO") -> None:
    formatter = JsonFormatter(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_Below(logging.WARNING))
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [out, err]
    root.setLevel(level.upper())
    for noisy in ("httpx", "engineio", "socketio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # LiteLLM warns about every custom-priced model; our cost comes from models.yaml anyway.
    for noisy in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
