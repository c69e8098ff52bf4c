"""OpenAI's error shape for the OpenAI-compatible routes: {"error": {"message", "type", "code", "param"}}.

Kept apart from the router so app.py's error handlers can use it without importing the services.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

OPENAI_PATH = re.compile(r"^/api/t/[^/]+/v1(/|$)")
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error", 421: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error"}

# The department's, a member's and an assistant's budgets (governance/allowances.py BUDGET_LIMITS).
_BUDGETS = frozenset({"tokens_per_day", "monthly_budget_usd", "member_tokens_per_day", "member_monthly_budget_usd",
                      "assistant_monthly_budget_usd"})


def is_openai_path(path: str) -> bool:
    return bool(OPENAI_PATH.match(path))


def openai_error_body(status: int, code: str, message: str, param: str | None = None,
                      fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """`fields`: more about the error, beside OpenAI's four (SDKs keep them in the error's body)."""
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if status == 429 and code in _BUDGETS:
        kind = "insufficient_quota"
    return {"error": {"message": message, "type": kind, "code": code, "param": param, **(fields or {})}}


def openai_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 param: str | None = None, fields: dict[str, Any] | None = None) -> JSONResponse:
    # 422 (FastAPI's validation status) is 400 in OpenAI's API; SDKs map 400 to BadRequestError.
    return JSONResponse(openai_error_body(status, code, message, param, fields),
                        status_code=400 if status == 422 else status, headers=headers)
