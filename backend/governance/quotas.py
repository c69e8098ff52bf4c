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
answers in progress (quota_leases.py), so only a process that died stops renewing: its holds lapse a lease later and
the next admission purges them. The tokens a dead process's turns streamed are charged by whoever marks them
interrupted (`charge_sync`).

This module is the service: the admission, settling and charging. The counters and their keys are quota_counters.py,
the tenant-level refusals quota_refusals.py, the SQL it reads quota_reads.py, the backends (in-process, Redis)
ratelimit.py, the nested budgets (a member's allowance, an assistant's budget) allowances.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from backend.db.engine import Database
from backend.governance import quota_refusals
from backend.governance.allowance_cache import RaisedAllowances
from backend.governance.allowances import (
    BUDGET_TTL_S,
    IN_PROGRESS_RETRY_S,
    MICRO,
    TOKENS_TTL_S,
    Allowance,
    configured_allowance,
    day_start,
    member_id,
    month_id,
    month_start,
    nested_refusal,
    nested_warning,
    usd,
    with_raise,
)
from backend.governance.metrics import NoMetrics
from backend.governance.quota_admission import Admission
from backend.governance.quota_counters import Counters
from backend.governance.quota_leases import HoldKeeper
from backend.governance.quota_reads import member_of, sum_usage_seed
from backend.governance.quota_refusals import TENANT_LIMITS
from backend.governance.ratelimit import Charge, LimitBackend, Reservation, Window, hold_member
from backend.tenants import Quotas, TenantConfig, TenantRegistry

log = logging.getLogger("atrium.quotas")

# A turn's "charged so far" mark (settle, charge_sync) outlives its answer and the reaping of it (a lease after its
# process stopped beating), and a database outage of a day: the life of a day's counter.
TURN_MARK_TTL_S = TOKENS_TTL_S
_PLANS = 4096  # members whose rate windows are kept made

# Imported from here by callers that predate the split (chat/turn.py, tests).
__all__ = ["IN_PROGRESS_RETRY_S", "MICRO", "Admission", "QuotaService", "sum_usage_seed"]


class QuotaService:
    def __init__(self, *, backend: LimitBackend, registry: TenantRegistry, db: Database,
                 prefix: str = "atrium", warn_ratio: float = 0.8, lease_s: float = 60.0,
                 metrics: NoMetrics | None = None, allowance_cache_s: float = 0.0) -> None:
        """`allowance_cache_s`: how long a member's raised allowance may be kept (allowance_cache.py): only where
        every replica's raises bump the version it is checked against (a shared backend, or a single node)."""
        self.backend = backend
        self.metrics = metrics or NoMetrics()  # refusals by limit (the share used is read per scrape: quota_gauge.py)
        self.registry = registry
        self.db = db
        self.prefix = prefix
        self.warn_ratio = warn_ratio
        self.lease_s = lease_s
        self.counters = Counters(prefix=prefix, db=db)
        self.leases = HoldKeeper(backend=backend, lease_s=lease_s)
        self._window_plans: dict[tuple, list[Window]] = {}  # (tenant, subject, limits) -> rate windows (_windows)
        self.raised = RaisedAllowances(db=db, backend=backend, ttl_s=allowance_cache_s,
                                       version_key=lambda tenant: self._key(tenant, "allowances"))

    @property
    def _live(self) -> dict[str, Admission]:
        """hold -> admission, while its answer is in progress (quota_leases.py)."""
        return self.leases.live

    def _key(self, tenant: str, *parts: str) -> str:
        return self.counters.key(tenant, *parts)

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
        windows = self._windows(tenant, quotas, subject) if count_request else []
        reservations: list[Reservation] = []
        _, _, dkey, mkey = self.counters.periods(now)
        tokens, micro = max(0, int(est_tokens)), max(0, round(est_cost_usd * MICRO))
        if quotas.tokens_per_day is not None:
            adm.token_key = self._key(tenant, "tokens", dkey)
            adm.reserved_tokens = tokens
        if quotas.monthly_budget_usd is not None and dollars:
            adm.budget_key = self._key(tenant, "usd", mkey)
            adm.reserved_micro_usd = micro
        allowance = await self.allowance(cfg, subject, roles=roles, groups=groups, now=now) \
            if quotas.has_member_limits else None
        adm.allowance = allowance.source if allowance is not None and allowance.limited else None
        adm.levels = self.counters.levels(cfg, subject, allowance, assistant, tokens, micro if dollars else None, now)
        reservations += [Reservation(lv.key, lv.limit, lv.amount, lv.ttl_s, lv.name, seed=lv.seed)
                         for lv in adm.levels]
        # A 0 quota refuses every call, even a free one (a cached answer, the local model), before any counter
        # is touched; a window of 0 would also have no oldest hit to compute a Retry-After from.
        blocked = next((lim.name for lim in [*windows, *reservations] if lim.limit <= 0), None)
        if blocked in TENANT_LIMITS:
            raise quota_refusals.blocked(tenant=tenant, name=name, limit=blocked, metrics=self.metrics)
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
            raise quota_refusals.refused(tenant=tenant, name=name, decision=decision, quotas=quotas, adm=adm,
                                         now=now, metrics=self.metrics, sets_max_tokens=sets_max_tokens)
        self.leases.keep(adm, lease_s=self.lease_s)
        for lv in adm.levels:
            if lv.level != "tenant" and lv.limit and decision.used.get(lv.key, 0) >= self.warn_ratio * lv.limit:
                adm.warnings.append(nested_warning(lv, tenant=cfg, assistant=assistant,
                                                   used=decision.used.get(lv.key, 0), now=now))
        # decision.used is what was used before this request: a large reservation (max_tokens) or answers in
        # progress do not report usage that has not happened.
        if adm.token_key and quotas.tokens_per_day:
            used = decision.used.get(adm.token_key, 0)
            if used >= self.warn_ratio * quotas.tokens_per_day:
                adm.warnings.append(f"{name} has used {used / quotas.tokens_per_day:.0%} of today's "
                                    f"{quotas.tokens_per_day:,} tokens.")
        if adm.budget_key and quotas.monthly_budget_usd:
            used_usd = decision.used.get(adm.budget_key, 0) / MICRO
            if used_usd >= self.warn_ratio * quotas.monthly_budget_usd:
                adm.warnings.append(f"{name} has used {used_usd / quotas.monthly_budget_usd:.0%} of its monthly "
                                    f"budget of {usd(round(quotas.monthly_budget_usd * MICRO))}.")
        return adm

    def _windows(self, tenant: str, quotas: Quotas, subject: str) -> list[Window]:
        """The tenant's and the member's rate windows (shared, never changed: made once per member and limits)."""
        plan = (tenant, subject, quotas.requests_per_minute, quotas.user_requests_per_minute)
        windows = self._window_plans.get(plan)
        if windows is None:
            windows = []
            # `is not None`, not truthiness: 0 is a limit (blocked), only null/absent is unlimited.
            if quotas.requests_per_minute is not None:
                windows.append(Window(self._key(tenant, "rpm"), quotas.requests_per_minute, 60,
                                      "requests_per_minute"))
            if quotas.user_requests_per_minute is not None:
                windows.append(Window(self._key(tenant, "user", member_id(subject), "rpm"),
                                      quotas.user_requests_per_minute, 60, "user_requests_per_minute"))
            if len(self._window_plans) >= _PLANS:  # bounded: members come and go
                self._window_plans.clear()
            self._window_plans[plan] = windows
        return windows

    async def allowance(self, cfg: TenantConfig, subject: str, *, roles: frozenset[str] = frozenset(),
                        groups: frozenset[str] = frozenset(), now: datetime | None = None) -> Allowance:
        """The member's allowance this month: tenants.yaml, raised by a tenant admin (SQL, or its copy kept under the
        tenant's allowance version, which every raise bumps: a raise applies at once on every replica)."""
        raised = await self.raised.get(cfg.id, subject, month_id(now or datetime.now(UTC)))
        return with_raise(configured_allowance(cfg.quotas, roles, groups), raised)

    def member_keys(self, tenant: str, subject: str, *, now: datetime) -> tuple[str, str]:
        """The member's counters today (tokens) and this month (micro-USD)."""
        return self.counters.member_keys(tenant, subject, now=now)

    async def settle(self, adm: Admission, *, tokens: int, cost_usd: float) -> None:
        """Replace the reservation with what the call really used."""
        if adm.settled:
            return
        adm.settled = True
        self.leases.drop(adm)
        used = {"tokens": int(tokens), "usd": round(cost_usd * MICRO)}
        if adm.turn is not None and any(used.values()) and adm.levels:
            # A turn whose row exists may also be charged by a survivor that reaped it (this process lost the
            # database, not Redis, and stopped beating): whoever comes second adds only what the first did not.
            await self.backend.charge_once(self._key(adm.tenant, "turn", adm.turn), [
                Charge(lv.key, lv.unit, used[lv.unit], lv.ttl_s, hold_member(adm.hold, lv.amount))
                for lv in adm.levels], TURN_MARK_TTL_S)
            return
        # Every level at once (one lock / one Lua script): no moment where the member's counter has the call and
        # the tenant's does not.
        await self.backend.settle_many([(lv.key, hold_member(adm.hold, lv.amount), used[lv.unit], lv.ttl_s)
                                        for lv in adm.levels])

    async def release(self, adm: Admission) -> None:
        await self.settle(adm, tokens=0, cost_usd=0.0)

    def live_holds(self) -> int:
        return len(self.leases.live)

    def charge_sync(self, *, tenant: str, at: datetime, tokens: int, cost_usd: float, subject: str | None = None,
                    assistant: str | None = None, turn: str | None = None) -> None:
        """Count what a turn used whose reservation lapsed (its process died): from a thread, no event loop. Any
        tenant of tenants.yaml, served here or not: the reaping of dead processes is global (any survivor marks
        their turns), and so is this charge to the tenant's counters (shared in Redis). `turn` (its turn_key): the
        charge counts once, together with its own process's settlement if that process was alive after all."""
        cfg = self.registry.locate(tenant)
        quotas = cfg.quotas if cfg else None
        if quotas is None:
            return
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        micro = round(cost_usd * MICRO)
        charges: list[Charge] = []
        if quotas.tokens_per_day is not None:
            charges.append(Charge(self._key(tenant, "tokens", day_start(at).strftime("%Y%m%d")), "tokens",
                                  int(tokens), TOKENS_TTL_S))
        if quotas.monthly_budget_usd is not None:
            charges.append(Charge(self._key(tenant, "usd", month_start(at).strftime("%Y%m")), "usd", micro,
                                  BUDGET_TTL_S))
        # The member's and the assistant's counters, where they exist (a missing one is left to its seed).
        if subject is not None and quotas.has_member_limits:
            subject = member_of(self.db, tenant, subject)  # an API key's turn counts against its owner
            token_key, usd_key = self.member_keys(tenant, subject, now=at)
            charges += [Charge(token_key, "tokens", int(tokens), TOKENS_TTL_S),
                        Charge(usd_key, "usd", micro, BUDGET_TTL_S)]
        if assistant and assistant in quotas.assistants:
            charges.append(Charge(self._key(tenant, "assistant", assistant, "usd", month_id(at)), "usd", micro,
                                  BUDGET_TTL_S))
        if turn is not None:
            if charges and (tokens or micro):
                self.backend.charge_once_sync(self._key(tenant, "turn", turn), charges, TURN_MARK_TTL_S)
            return
        for c in charges:
            if c.amount:
                self.backend.adjust_sync(c.key, c.amount, c.ttl_s)

    async def reserved(self, tenant: str, *, now: datetime | None = None) -> dict[str, int]:
        """What answers in progress hold today (tokens) and this month (micro-USD), expired holds purged."""
        now = now or datetime.now(UTC)
        return {"tokens": await self.backend.held(self._key(tenant, "tokens", day_start(now).strftime("%Y%m%d"))),
                "micro_usd": await self.backend.held(self._key(tenant, "usd", month_start(now).strftime("%Y%m")))}


