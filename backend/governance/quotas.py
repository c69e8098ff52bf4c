"""Tenant quotas from config/tenants.yaml: requests/min (tenant and user), tokens/day, monthly budget.

Before a model call, `admit()` atomically takes one request slot from both rate windows and reserves the
call's estimated tokens and cost against the day's tokens and the month's budget (see ratelimit.py);
`settle()` replaces the estimate with the real figures afterwards, `release()` returns it on failure.
A quota that is null/absent is unlimited; 0 blocks (the tenant's model calls are switched off).

A refusal is QuotaExceeded (429) naming the limit. Its message and Retry-After tell what helps:
- the limit is used up (before this request): Retry-After = when it frees up (window / midnight / month end);
- it is not, but this request's reservation (prompt + max_tokens) does not fit what remains: the message says
  how much it needs and how much remains; Retry-After = the reset, after which the same request fits;
- the reservation alone is larger than the whole limit, or the quota is 0: no Retry-After (waiting never helps).
At 80% of a budget, counting what was used before this request, the admission carries a warning for the user.

Reservations are holds with a lease (ratelimit.py): what answers in progress reserved is not what was used, and a
refusal says which it is ("Finance has used 300 of its 1,000 tokens today; 750 more are reserved by answers in
progress: retry when they finish", Retry-After IN_PROGRESS_RETRY_S). This service renews the holds of its own
answers in progress (one call per lease/3 for all of them, from a task on the event loop that admitted them), so
only a process that died stops renewing: its holds lapse a lease later and the next admission purges them. The
tokens a dead process's turns streamed are charged by whoever marks them interrupted (`charge_sync`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from backend.db.engine import Database
from backend.db.models import MemberAllowance
from backend.db.repositories.allowances import current_allowance
from backend.db.repositories.api_keys import key_owners
from backend.db.repositories.usage import sum_usage
from backend.errors import QuotaExceeded
from backend.governance.allowances import (
    ASSISTANT_USD,
    BUDGET_TTL_S,
    IN_PROGRESS_RETRY_S,
    MEMBER_TOKENS,
    MEMBER_USD,
    TOKENS_TTL_S,
    Allowance,
    Level,
    configured_allowance,
    day_start,
    member_id,
    month_id,
    month_start,
    nested_refusal,
    nested_warning,
    next_month,
    usd,
    with_raise,
)
from backend.governance.metrics import NoMetrics
from backend.governance.ratelimit import Decision, LimitBackend, Reservation, Window, hold_member
from backend.tenants import Quotas, TenantConfig, TenantRegistry

log = logging.getLogger("atrium.quotas")

MICRO = 1_000_000  # budgets are counted in micro-USD (integers are atomic in Redis)
_day_start, _month_start, _next_month = day_start, month_start, next_month


@dataclass
class Admission:
    tenant: str
    reserved_tokens: int = 0
    reserved_micro_usd: int = 0
    token_key: str | None = None
    budget_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    settled: bool = False
    hold: str = field(default_factory=lambda: uuid.uuid4().hex)  # the reservation's id (its lease is renewed)
    levels: list[Level] = field(default_factory=list)  # every counter reserved on: tenant, member, assistant
    allowance: str | None = None  # the member's allowance it was admitted under (Allowance.source)

    def holds(self) -> list[tuple[str, str]]:
        """(counter key, hold member) of what this admission reserved."""
        return [(lv.key, hold_member(self.hold, lv.amount)) for lv in self.levels if lv.amount > 0]


class QuotaService:
    def __init__(self, *, backend: LimitBackend, registry: TenantRegistry, db: Database,
                 prefix: str = "atrium", warn_ratio: float = 0.8, lease_s: float = 60.0,
                 metrics: NoMetrics | None = None) -> None:
        self.backend = backend
        self.metrics = metrics or NoMetrics()  # refusals by limit; the share of each daily/monthly limit used
        self.registry = registry
        self.db = db
        self.prefix = prefix
        self.warn_ratio = warn_ratio
        self.lease_s = lease_s
        self._live: dict[str, Admission] = {}  # hold -> admission, while its answer is in progress
        self._keeper: asyncio.Task | None = None

    def _key(self, tenant: str, *parts: str) -> str:
        return ":".join([self.prefix, "quota", tenant, *parts])  # every bucket is prefixed with its tenant

    async def admit(self, *, tenant: str, subject: str, est_tokens: int = 0, est_cost_usd: float = 0.0,
                    now: datetime | None = None, count_request: bool = True, sets_max_tokens: bool = True,
                    roles: frozenset[str] = frozenset(), groups: frozenset[str] = frozenset(),
                    assistant: str | None = None, dollars: bool = True) -> Admission:
        """`count_request=False`: an internal call made on behalf of a request that already took its slot
        (a follow-up's query rewrite): tokens and budget are reserved, the rate windows are not touched.
        `sets_max_tokens=False`: the caller cannot lower max_tokens (the chat), so a refusal does not tell them to.
        `roles`, `groups` (the member's claim groups of `member_overrides`): which allowance `subject` has;
        `assistant`: whose budget the call also counts against. `dollars=False`: a call that costs nothing (the
        local model) counts tokens only, never against a budget in dollars."""
        cfg = self.registry.get(tenant)
        quotas = cfg.quotas if cfg else None
        name = cfg.name if cfg else tenant
        now = now or datetime.now(UTC)
        adm = Admission(tenant=tenant)
        if quotas is None or cfg is None:
            return adm
        windows: list[Window] = []
        reservations: list[Reservation] = []
        # `is not None`, not truthiness: 0 is a limit (blocked), only null/absent is unlimited.
        if quotas.requests_per_minute is not None and count_request:
            windows.append(Window(self._key(tenant, "rpm"), quotas.requests_per_minute, 60, "requests_per_minute"))
        if quotas.user_requests_per_minute is not None and count_request:
            user = hashlib.sha256(subject.encode()).hexdigest()[:16]
            windows.append(Window(self._key(tenant, "user", user, "rpm"), quotas.user_requests_per_minute, 60,
                                  "user_requests_per_minute"))
        day = _day_start(now)
        tokens, micro = max(0, int(est_tokens)), max(0, round(est_cost_usd * MICRO))
        if quotas.tokens_per_day is not None:
            adm.token_key = self._key(tenant, "tokens", day.strftime("%Y%m%d"))
            adm.reserved_tokens = tokens
        if quotas.monthly_budget_usd is not None and dollars:
            adm.budget_key = self._key(tenant, "usd", month_id(now))
            adm.reserved_micro_usd = micro
        allowance = await self.allowance(cfg, subject, roles=roles, groups=groups, now=now) \
            if quotas.has_member_limits else None
        adm.allowance = allowance.source if allowance is not None and allowance.limited else None
        adm.levels = self._levels(cfg, subject, allowance, assistant, tokens, micro if dollars else None, now)
        reservations += [Reservation(lv.key, lv.limit, lv.amount, lv.ttl_s, lv.name, seed=lv.seed)
                         for lv in adm.levels]
        # A 0 quota refuses every call, even a free one (a cached answer, the local model), before any counter
        # is touched; a window of 0 would also have no oldest hit to compute a Retry-After from.
        blocked = next((lim.name for lim in [*windows, *reservations] if lim.limit <= 0), None)
        if blocked in _TENANT_LIMITS:
            raise self._blocked(tenant, name, blocked, quotas)
        if blocked:
            level = next(lv for lv in adm.levels if lv.name == blocked)
            self.metrics.quota_refusal(tenant=tenant, limit=blocked)
            raise nested_refusal(level, tenant=cfg, assistant=assistant, used=0, held=0, now=now, fix="")
        if not windows and not reservations:
            return adm
        decision = await self.backend.admit(windows, reservations, hold=adm.hold, lease_s=self.lease_s)
        if not decision.ok:
            nested = next((lv for lv in adm.levels if lv.name == decision.denied and lv.level != "tenant"), None)
            if nested is not None:
                log.info("quota refused", extra={"tenant": tenant, "limit": nested.name})
                self.metrics.quota_refusal(tenant=tenant, limit=nested.name)
                raise nested_refusal(nested, tenant=cfg, assistant=assistant, used=decision.used.get(nested.key, 0),
                                     held=decision.held.get(nested.key, 0), now=now,
                                     fix="lower max_tokens or use a cheaper tier" if sets_max_tokens
                                     else "start a new conversation (it sends less history)")
            raise self._refusal(tenant, name, decision, quotas, adm, now, sets_max_tokens=sets_max_tokens)
        self._keep(adm)
        for lv in adm.levels:
            if lv.level != "tenant" and lv.limit and decision.used.get(lv.key, 0) >= self.warn_ratio * lv.limit:
                adm.warnings.append(nested_warning(lv, tenant=cfg, assistant=assistant,
                                                   used=decision.used.get(lv.key, 0), now=now))
        # decision.used is what was used before this request: a large reservation (max_tokens) or answers in
        # progress do not report usage that has not happened.
        if adm.token_key and quotas.tokens_per_day:
            used = decision.used.get(adm.token_key, 0)
            self.metrics.quota_used(tenant=tenant, limit="tokens_per_day", ratio=used / quotas.tokens_per_day)
            if used >= self.warn_ratio * quotas.tokens_per_day:
                adm.warnings.append(f"{name} has used {used / quotas.tokens_per_day:.0%} of today's "
                                    f"{quotas.tokens_per_day:,} tokens.")
        if adm.budget_key and quotas.monthly_budget_usd:
            used_usd = decision.used.get(adm.budget_key, 0) / MICRO
            self.metrics.quota_used(tenant=tenant, limit="monthly_budget_usd",
                                    ratio=used_usd / quotas.monthly_budget_usd)
            if used_usd >= self.warn_ratio * quotas.monthly_budget_usd:
                adm.warnings.append(f"{name} has used {used_usd / quotas.monthly_budget_usd:.0%} of its monthly "
                                    f"budget of {_usd(round(quotas.monthly_budget_usd * MICRO))}.")
        return adm

    def _levels(self, cfg: TenantConfig, subject: str, allowance: Allowance | None, assistant: str | None,
                tokens: int, micro: int | None, now: datetime) -> list[Level]:
        """The counters the call reserves on, the most specific first (its refusal names the member's allowance
        before the department's); `micro=None`: a free call, on no budget in dollars."""
        tenant, quotas, db = cfg.id, cfg.quotas, self.db
        day, month = _day_start(now), _month_start(now)
        dkey, mkey = day.strftime("%Y%m%d"), month_id(now)
        out: list[Level] = []
        if allowance is not None:
            who = member_id(subject)
            if allowance.tokens_per_day is not None:
                out.append(Level(self._key(tenant, "member", who, "tokens", dkey), int(allowance.tokens_per_day),
                                 tokens, TOKENS_TTL_S, MEMBER_TOKENS, "tokens",
                                 lambda: sum_usage_seed(db, tenant, day, subject=subject)[0]))
            if allowance.monthly_budget_usd is not None and micro is not None:
                out.append(Level(self._key(tenant, "member", who, "usd", mkey),
                                 round(allowance.monthly_budget_usd * MICRO), micro, BUDGET_TTL_S, MEMBER_USD, "usd",
                                 lambda: round(sum_usage_seed(db, tenant, month, subject=subject)[1] * MICRO)))
        budget = quotas.assistants.get(assistant) if assistant else None
        if budget is not None and budget.monthly_budget_usd is not None and micro is not None:
            out.append(Level(self._key(tenant, "assistant", str(assistant), "usd", mkey),
                             round(budget.monthly_budget_usd * MICRO), micro, BUDGET_TTL_S, ASSISTANT_USD, "usd",
                             lambda: round(sum_usage_seed(db, tenant, month, assistant=assistant)[1] * MICRO)))
        if quotas.tokens_per_day is not None:
            out.append(Level(self._key(tenant, "tokens", dkey), int(quotas.tokens_per_day), tokens, TOKENS_TTL_S,
                             "tokens_per_day", "tokens", lambda: sum_usage_seed(db, tenant, day)[0]))
        if quotas.monthly_budget_usd is not None and micro is not None:
            out.append(Level(self._key(tenant, "usd", mkey), round(quotas.monthly_budget_usd * MICRO), micro,
                             BUDGET_TTL_S, "monthly_budget_usd", "usd",
                             lambda: round(sum_usage_seed(db, tenant, month)[1] * MICRO)))
        return out

    async def allowance(self, cfg: TenantConfig, subject: str, *, roles: frozenset[str] = frozenset(),
                        groups: frozenset[str] = frozenset(), now: datetime | None = None) -> Allowance:
        """The member's allowance this month: tenants.yaml, raised by a tenant admin (read from SQL on every call,
        so a raise applies at once on every replica)."""
        month = month_id(now or datetime.now(UTC))
        raised = await asyncio.to_thread(_raised, self.db, cfg.id, subject, month)
        return with_raise(configured_allowance(cfg.quotas, roles, groups), raised)

    def member_keys(self, tenant: str, subject: str, *, now: datetime) -> tuple[str, str]:
        """The member's counters today (tokens) and this month (micro-USD)."""
        who = member_id(subject)
        return (self._key(tenant, "member", who, "tokens", _day_start(now).strftime("%Y%m%d")),
                self._key(tenant, "member", who, "usd", month_id(now)))

    def _blocked(self, tenant: str, name: str, limit: str, quotas: Quotas) -> QuotaExceeded:
        """`name` (the display name) is for the message; logs carry the tenant id, as every other logger does."""
        what = {"requests_per_minute": "limit is 0 requests per minute",
                "user_requests_per_minute": "limit is 0 requests per minute per user",
                "tokens_per_day": "limit is 0 tokens a day",
                "monthly_budget_usd": "monthly budget is $0"}[limit]
        msg = (f"{name}'s {what}: model calls are switched off; a platform operator can raise it in "
               f"config/tenants.yaml.")
        log.info("quota refused", extra={"tenant": tenant, "limit": limit, "retry_after": None})
        self.metrics.quota_refusal(tenant=tenant, limit=limit)
        return _exceeded(msg, limit, None)

    def _refusal(self, tenant: str, name: str, decision: Decision, quotas: Quotas, adm: Admission,
                 now: datetime, *, sets_max_tokens: bool = True) -> QuotaExceeded:
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
                msg = (f"{name} has reached its limit of {_requests(quotas.requests_per_minute)} per minute; "
                       f"try again in {retry_after} s.")
            else:
                msg = (f"You have reached your limit of {_requests(quotas.user_requests_per_minute)} per minute "
                       f"in {name}; try again in {retry_after} s.")
        elif limit == "tokens_per_day":
            reset = _day_start(now) + timedelta(days=1)
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
            reset = _next_month(now)
            budget = float(quotas.monthly_budget_usd or 0)
            cap, need = round(budget * MICRO), adm.reserved_micro_usd
            used = decision.used.get(adm.budget_key or "", cap)
            held = decision.held.get(adm.budget_key or "", 0)
            retry_after = (reset - now).total_seconds()
            if used >= cap:
                msg = (f"{name} has used its monthly budget of {_usd(cap)}; it resets on {reset:%Y-%m-%d} "
                       f"(00:00 UTC). A platform operator can raise it in config/tenants.yaml.")
            elif held and need <= cap - used:
                retry_after = IN_PROGRESS_RETRY_S
                msg = (f"{name} has used {_usd(used)} of its monthly budget of {_usd(cap)}; {_usd(held)} more is "
                       f"reserved by answers in progress: retry when they finish.")
            else:
                msg = (f"This request may cost up to {_usd(need)} ({what}) but only "
                       f"{_usd(max(0, cap - used - held))} of {name}'s monthly budget of {_usd(cap)} remains"
                       + (f" ({_usd(used)} used, {_usd(held)} reserved by answers in progress)" if held else "")
                       + "; "
                       + ("lower max_tokens, shorten the conversation or use a cheaper tier" if sets_max_tokens
                          else fix))
                if need > cap:
                    retry_after = None
                    msg += " (it costs more than the whole monthly budget, so waiting will not help)."
                else:
                    msg += f", or wait until the budget resets on {reset:%Y-%m-%d} (00:00 UTC)."
        log.info("quota refused", extra={"tenant": tenant, "limit": limit, "retry_after": retry_after})
        self.metrics.quota_refusal(tenant=tenant, limit=limit)
        return _exceeded(msg, limit, retry_after)

    async def settle(self, adm: Admission, *, tokens: int, cost_usd: float) -> None:
        """Replace the reservation with what the call really used."""
        if adm.settled:
            return
        adm.settled = True
        self._live.pop(adm.hold, None)
        # Every level at once (one lock / one Lua script): no moment where the member's counter has the call and
        # the tenant's does not.
        await self.backend.settle_many([
            (lv.key, hold_member(adm.hold, lv.amount), int(tokens) if lv.unit == "tokens" else round(cost_usd * MICRO),
             lv.ttl_s) for lv in adm.levels])

    async def release(self, adm: Admission) -> None:
        await self.settle(adm, tokens=0, cost_usd=0.0)

    # -- leases: this process's answers in progress keep their holds; a dead process's lapse -------------------

    def _keep(self, adm: Admission) -> None:
        if not adm.holds():
            return
        self._live[adm.hold] = adm
        if self._keeper is None or self._keeper.done() or self._keeper.get_loop() is not asyncio.get_running_loop():
            self._keeper = asyncio.get_running_loop().create_task(self._renew_while_live(), name="quota-leases")

    async def _renew_while_live(self) -> None:
        """Renew the live holds every lease/3 (one call for all of them); stops when none is left."""
        while self._live:
            await asyncio.sleep(self.lease_s / 3)
            holds = [h for adm in list(self._live.values()) if not adm.settled for h in adm.holds()]
            try:
                await self.backend.renew(holds, self.lease_s)
            except Exception:  # the next round tries again; a lapsed hold only lets a request in early
                log.warning("could not renew quota reservations", exc_info=True)

    def live_holds(self) -> int:
        return len(self._live)

    def charge_sync(self, *, tenant: str, at: datetime, tokens: int, cost_usd: float, subject: str | None = None,
                    assistant: str | None = None) -> None:
        """Count what a turn used whose reservation lapsed (its process died): from a thread, no event loop. Any
        tenant of tenants.yaml, served here or not: the reaping of dead processes is global (any survivor marks
        their turns), and so is this charge to the tenant's counters (shared in Redis)."""
        cfg = self.registry.locate(tenant)
        quotas = cfg.quotas if cfg else None
        if quotas is None:
            return
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if quotas.tokens_per_day is not None and tokens:
            self.backend.adjust_sync(self._key(tenant, "tokens", _day_start(at).strftime("%Y%m%d")), int(tokens),
                                     TOKENS_TTL_S)
        if quotas.monthly_budget_usd is not None and cost_usd:
            self.backend.adjust_sync(self._key(tenant, "usd", _month_start(at).strftime("%Y%m")),
                                     round(cost_usd * MICRO), BUDGET_TTL_S)
        # The member's and the assistant's counters, where they exist (adjust_sync leaves a missing one to its seed).
        if subject is not None and quotas.has_member_limits:
            subject = _member_of(self.db, tenant, subject)  # an API key's turn counts against its owner
            token_key, usd_key = self.member_keys(tenant, subject, now=at)
            if tokens:
                self.backend.adjust_sync(token_key, int(tokens), TOKENS_TTL_S)
            if cost_usd:
                self.backend.adjust_sync(usd_key, round(cost_usd * MICRO), BUDGET_TTL_S)
        if assistant and assistant in quotas.assistants and cost_usd:
            self.backend.adjust_sync(self._key(tenant, "assistant", assistant, "usd", month_id(at)),
                                     round(cost_usd * MICRO), BUDGET_TTL_S)

    async def reserved(self, tenant: str, *, now: datetime | None = None) -> dict[str, int]:
        """What answers in progress hold today (tokens) and this month (micro-USD), expired holds purged."""
        now = now or datetime.now(UTC)
        return {"tokens": await self.backend.held(self._key(tenant, "tokens", _day_start(now).strftime("%Y%m%d"))),
                "micro_usd": await self.backend.held(self._key(tenant, "usd", _month_start(now).strftime("%Y%m")))}


def _requests(n: int | None) -> str:
    return "1 request" if n == 1 else f"{n} requests"


_usd = usd


def _exceeded(msg: str, limit: str, retry_after: float | None) -> QuotaExceeded:
    """A 429; `retry_after=None` when waiting does not help."""
    return QuotaExceeded(msg, retry_after=None if retry_after is None else math.ceil(retry_after), limit=limit)


def sum_usage_seed(db: Database, tenant: str, since: datetime, *, subject: str | None = None,
                   assistant: str | None = None) -> tuple[int, float]:
    with db.session() as session:
        return sum_usage(session=session, tenant=tenant, since=since, subject=subject, assistant=assistant)


def _member_of(db: Database, tenant: str, subject: str) -> str:
    """Whose allowance a recorded turn counts against: a key's owner (auth/principal.py Principal.member)."""
    if not subject.startswith("key:"):
        return subject
    with db.session() as session:
        return key_owners(session=session, tenant=tenant).get(subject, subject)


def _raised(db: Database, tenant: str, subject: str, month: str) -> MemberAllowance | None:
    with db.session() as session:
        row = current_allowance(session=session, tenant=tenant, subject=subject, month=month)
        if row is not None:
            session.expunge(row)
        return row


_TENANT_LIMITS = frozenset({"requests_per_minute", "user_requests_per_minute", "tokens_per_day",
                            "monthly_budget_usd"})
