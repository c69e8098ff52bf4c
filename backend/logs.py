"""JSON-lines logging: one object per line, with any `extra={...}` fields merged in."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Record attributes that are not fields of ours; libraries' decorations (uvicorn's ANSI-coloured copy of the
# message, LiteLLM's redaction marker) are noise in a JSON line.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message", "litellm_redacted"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "engineio", "socketio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # LiteLLM warns about every custom-priced model; our cost comes from models.yaml anyway.
    for noisy in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
