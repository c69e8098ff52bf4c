"""Small exception classes; app.py maps them to HTTP in one handler (JSON body names the reason)."""

from __future__ import annotations


class AtriumError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(AtriumError):
    status_code = 400
    code = "bad_request"


class NotAuthenticated(AtriumError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(AtriumError):
    status_code = 403
    code = "forbidden"


class NotFound(AtriumError):
    status_code = 404
    code = "not_found"


class Misdirected(AtriumError):
    """421: the tenant is served by another deployment group's processes (the body names it and its address)."""

    status_code = 421
    code = "served_elsewhere"


class Conflict(AtriumError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AtriumError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMedia(AtriumError):
    status_code = 415
    code = "unsupported_media_type"


class Invalid(AtriumError):
    status_code = 422
    code = "invalid"


class QuotaExceeded(AtriumError):
    status_code = 429
    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: int | None, limit: str, level: str | None = None,
                 resets_at: str | None = None, **kw) -> None:
        """`retry_after=None`: waiting will not help (no Retry-After header, no `retry_after` field). `level`: whose
        budget refused (`tenant`, `member`, `assistant`), `resets_at` when it resets (ISO 8601 UTC)."""
        self.retry_after = None if retry_after is None else max(1, int(retry_after))
        self.limit = limit
        self.level = level
        extra: dict = {"limit": limit}
        if level:
            extra.update(level=level, resets_at=resets_at)
        if self.retry_after is None:
            super().__init__(message, extra=extra, **kw)
        else:
            super().__init__(message, headers={"Retry-After": str(self.retry_after)},
                             extra={**extra, "retry_after": self.retry_after}, **kw)


class UpstreamError(AtriumError):
    status_code = 502
    code = "upstream_error"


class Unavailable(AtriumError):
    status_code = 503
    code = "unavailable"
