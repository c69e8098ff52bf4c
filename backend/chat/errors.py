"""What a failed model call means for the caller, after the Router's retries and fallbacks: one AtriumError
(mapped to HTTP in one handler), or None for an error that is a bug and must surface as one."""

from __future__ import annotations

from backend.errors import AtriumError, BadRequest, Invalid, Unavailable, UpstreamError
from backend.llm.service import NoModelAvailable, UnsupportedParameter


def _provider_error(exc: Exception) -> bool:
    return type(exc).__module__.split(".")[0] in ("litellm", "openai", "httpx")


def as_atrium_error(exc: BaseException) -> AtriumError | None:
    """What a failed model call means for the caller (after the Router's retries and fallbacks), or None."""
    if isinstance(exc, NoModelAvailable):
        return Unavailable(str(exc), code="no_model_available")
    if isinstance(exc, UnsupportedParameter):
        return Invalid(str(exc), code="unsupported_parameter", extra={"param": exc.param})
    if type(exc).__module__.split(".")[0] == "redis":
        # Quotas and rate limits live in Redis: without it no request can be admitted (failing open would let a
        # department overspend), but the outage is Atrium's, and temporary.
        return Unavailable(f"Atrium cannot check quotas and rate limits right now: Redis (REDIS_URL) does not answer "
                           f"({type(exc).__name__}); try again shortly", code="quota_store_unavailable",
                           headers={"Retry-After": "5"})
    if not isinstance(exc, Exception):
        return None
    if _rejected_by_provider(exc):
        if type(exc).__name__ == "ContextWindowExceededError":
            return BadRequest(f"the conversation is too long for the model: {_provider_message(exc)}",
                              code="context_length_exceeded")
        return BadRequest(f"the model provider rejected the request: {_provider_message(exc)}",
                          code="invalid_request")
    if _provider_error(exc):  # every deployment and fallback failed: a clear 502, not a stack trace
        return UpstreamError(f"the model provider failed after retries and fallbacks ({type(exc).__name__}); "
                             "try again shortly", code="model_error")
    return None


def _rejected_by_provider(exc: Exception) -> bool:
    """A provider's 400 after the Router's fallbacks: the request is wrong (too long for every tier tried
    included); retrying will not fix it. A content-policy refusal stays a provider failure."""
    return (_provider_error(exc) and getattr(exc, "status_code", None) == 400
            and type(exc).__name__ != "ContentPolicyViolationError")


def _provider_message(exc: Exception) -> str:
    text = str(getattr(exc, "message", "") or exc).split("\n", 1)[0]
    for prefix in ("litellm.ContextWindowExceededError: ", "litellm.BadRequestError: ",
                   "litellm.UnsupportedParamsError: "):
        text = text.removeprefix(prefix)
    return text[:300]
