"""The refusals of a tenant's own quotas (config/tenants.yaml `quotas`), as QuotaExceeded (429) naming the limit.
Its message and Retry-After tell what helps (quotas.py says when which applies); the refusals of a member's
allowance or an assistant's budget are allowances.py's `nested_refusal`."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from backend.errors import QuotaExceeded
from backend.governance.allowances import IN_PROGRESS_RETRY_S, MICRO, day_start, next_month, usd
from backend.governance.metrics import NoMetrics
from backend.governance.quota_admission import Admission
from backend.governance.ratelimit import Decision
from backend.tenants import Quotas

log = logging.getLogger("atrium.quotas")

TENANT_LIMITS = frozenset({"requests_per_minute", "user_requests_per_minute", "tokens_per_day",
                           "monthly_budget_usd"})


def blocked(*, tenant: str, name: str, limit: str, metrics: NoMetrics) -> QuotaExceeded:
    """`name` (the display name) is for the message; logs carry the tenant id, as every other logger does."""
    what = {"requests_per_minute": "limit is 0 requests per minute",
            "user_requests_per_minute": "limit is 0 requests per minute per user",
            "tokens_per_day": "limit is 0 tokens a day",
            "monthly_budget_usd": "monthly budget is $0"}[limit]
    msg = (f"{name}'s {what}: model calls are switched off; a platform operator can raise it in "
           f"config/tenants.yaml.")
    log.info("quota refused", extra={"tenant": tenant, "limit": limit, "retry_after": None})
    metrics.quota_refusal(tenant=tenant, limit=limit)
    return exceeded(msg, limit, None)


def refused(*, tenant: str, name: str, decision: Decision, quotas: Quotas, adm: Admission, now: datetime,
            metrics: NoMetrics, sets_max_tokens: bool = True) -> QuotaExceeded:
    """The refusal of a tenant-level limit (a rate window, the day's tokens, the month's budget), saying what
    helps: when the limit frees up, that answers in progress hold the rest, or that waiting will not help."""
    limit = decision.denied or ""
    # What the request reserves and what its sender can change: an API caller's max_tokens, or in the chat
    # only the history that a new conversation leaves behind.
    what, fix = (("its prompt plus max_tokens", "lower max_tokens or shorten the conversation") if sets_max_tokens
                 else ("the conversation so far plus the longest answer allowed",
                       "start a new conversation (it sends less history)"))
    retry_after: float | None
    if limit in ("requests_per_minute", "user_requests_per_minute"):
        retry_after = max(1, math.ceil(decision.retry_after_s))  # the message and Retry-After agree
        if limit == "requests_per_minute":
            msg = (f"{name} has reached its limit of {requests(quotas.requests_per_minute)} per minute; "
                   f"try again in {retry_after} s.")
        else:
            msg = (f"You have reached your limit of {requests(quotas.user_requests_per_minute)} per minute "
                   f"in {name}; try again in {retry_after} s.")
    elif limit == "tokens_per_day":
        reset = day_start(now) + timedelta(days=1)
        cap, need = int(quotas.tokens_per_day or 0), adm.reserved_tokens
        used = decision.used.get(adm.token_key or "", cap)  # before this request (both backends)
        held = decision.held.get(adm.token_key or "", 0)  # reserved by answers in progress
        retry_after = (reset - now).total_seconds()
        if used >= cap:
            msg = (f"{name} has used its {cap:,} tokens for today; the limit resets at "
                   f"{reset:%Y-%m-%d %H:%M} UTC.")
        elif held and need <= cap - used:  # it fits once the answers in progress are settled
            retry_after = IN_PROGRESS_RETRY_S
            msg = (f"{name} has used {used:,} of its {cap:,} tokens today; {held:,} more "
                   f"{'is' if held == 1 else 'are'} reserved by answers in progress: retry when they finish.")
        else:
            msg = (f"This request may need up to {need:,} tokens ({what}) but only "
                   f"{max(0, cap - used - held):,} of {name}'s {cap:,} tokens for today remain"
                   + (f" ({used:,} used, {held:,} reserved by answers in progress)" if held else "")
                   + f"; {fix}")
            if need > cap:
                retry_after = None
                msg += " (it needs more than the whole daily limit, so waiting will not help)."
            else:
                msg += f", or wait until the limit resets at {reset:%Y-%m-%d %H:%M} UTC."
    else:
        reset = next_month(now)
        budget = float(quotas.monthly_budget_usd or 0)
        cap, need = round(budget * MICRO), adm.reserved_micro_usd
        used = decision.used.get(adm.budget_key or "", cap)
        held = decision.held.get(adm.budget_key or "", 0)
        retry_after = (reset - now).total_seconds()
        if used >= cap:
            msg = (f"{name} has used its monthly budget of {usd(cap)}; it resets on {reset:%Y-%m-%d} "
                   f"(00:00 UTC). A platform operator can raise it in config/tenants.yaml.")
        elif held and need <= cap - used:
            retry_after = IN_PROGRESS_RETRY_S
            msg = (f"{name} has used {usd(used)} of its monthly budget of {usd(cap)}; {usd(held)} more is "
                   f"reserved by answers in progress: retry when they finish.")
        else:
            msg = (f"This request may cost up to {usd(need)} ({what}) but only "
                   f"{usd(max(0, cap - used - held))} of {name}'s monthly budget of {usd(cap)} remains"
                   + (f" ({usd(used)} used, {usd(held)} reserved by answers in progress)" if held else "")
                   + "; "
                   + ("lower max_tokens, shorten the conversation or use a cheaper tier" if sets_max_tokens
                      else fix))
            if need > cap:
                retry_after = None
                msg += " (it costs more than the whole monthly budget, so waiting will not help)."
            else:
                msg += f", or wait until the budget resets on {reset:%Y-%m-%d} (00:00 UTC)."
    log.info("quota refused", extra={"tenant": tenant, "limit": limit, "retry_after": retry_after})
    metrics.quota_refusal(tenant=tenant, limit=limit)
    return exceeded(msg, limit, retry_after)


def requests(n: int | None) -> str:
    return "1 request" if n == 1 else f"{n} requests"


def exceeded(msg: str, limit: str, retry_after: float | None) -> QuotaExceeded:
    """A 429; `retry_after=None` when waiting does not help."""
    return QuotaExceeded(msg, retry_after=None if retry_after is None else math.ceil(retry_after), limit=limit)

