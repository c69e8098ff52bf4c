"""Everyone sees their own room: a member's usage against their allowance in each of their tenants (`GET
/api/me/usage`, only their own numbers), every member's for a tenant admin (the usage report by user), and a
tenant admin raising one member's allowance for the month (SQL, and the tenant's allowance version bumped, so every
replica applies it on the next call: allowance_cache.py; audited). The allowance a member has depends on their role
and claim groups: the admin's view takes it from the member's latest call (chat_turn.allowance), the only place it
is known without the member's token.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from backend.auth.principal import CLI_OWNER, Principal
from backend.db.engine import Database
from backend.db.repositories.allowances import (
    admitted_under,
    current_allowance,
    has_turns,
    member_totals,
    month_allowances,
    raise_allowance,
)
from backend.db.repositories.api_keys import KEY_SUBJECT, get_api_key, key_owners
from backend.db.repositories.conversations import get_chat_user
from backend.errors import Conflict, Forbidden, Invalid
from backend.governance.allowances import (
    Allowance,
    allowance_named,
    configured_allowance,
    day_start,
    month_id,
    month_start,
    next_month,
    with_raise,
)
from backend.governance.audit import AuditLog
from backend.tenants import TenantConfig, TenantRegistry

MAX_TOKENS_PER_DAY, MAX_MONTHLY_USD = 10**12, 10**7  # a typo's upper bound, not a policy


class MemberUsage:
    def __init__(self, *, db: Database, registry: TenantRegistry, audit: AuditLog,
                 on_raised: Callable[[str], None] | None = None) -> None:
        """`on_raised(tenant)`: after a raise is committed (QuotaService.raised: the cached copies go stale)."""
        self.db = db
        self.registry = registry
        self.audit = audit
        self.on_raised = on_raised

    def mine(self, principal: Principal, *, now: datetime | None = None) -> dict:
        """The caller's own usage and allowance in each tenant they belong to here."""
        now = now or datetime.now(UTC)
        member = principal.member  # an API key shows its owner's allowance: the one its calls count against
        tenants = {}
        for tenant in sorted(principal.tenants):
            if (cfg := self.registry.get(tenant)) is None:
                continue
            with self.db.session() as s:
                raised = current_allowance(session=s, tenant=tenant, subject=member, month=month_id(now))
                today = member_totals(session=s, tenant=tenant, since=day_start(now), subject=member)
                month = member_totals(session=s, tenant=tenant, since=month_start(now), subject=member)
            allowance = with_raise(configured_allowance(cfg.quotas, *principal.allowance_basis(tenant)), raised)
            tenants[tenant] = figures(cfg, allowance, today.get(member, (0, 0.0))[0],
                                      month.get(member, (0, 0.0)), now)
        return {"subject": principal.subject, "member": member, "tenants": tenants}

    def members(self, tenant: str, *, now: datetime | None = None) -> dict[str, dict]:
        """subject -> their figures against their allowance this month, for every member who used the tenant."""
        now = now or datetime.now(UTC)
        cfg = self.registry.get(tenant)
        assert cfg is not None
        with self.db.session() as s:
            raised = month_allowances(session=s, tenant=tenant, month=month_id(now))
            under = admitted_under(session=s, tenant=tenant, since=month_start(now))
            today = member_totals(session=s, tenant=tenant, since=day_start(now))
            month = member_totals(session=s, tenant=tenant, since=month_start(now))
        return {subject: figures(cfg, with_raise(allowance_named(cfg.quotas, under.get(subject)), raised.get(subject)),
                                 today.get(subject, (0, 0.0))[0], month.get(subject, (0, 0.0)), now)
                for subject in sorted(set(month) | set(raised))}

    def key_owners(self, tenant: str) -> dict[str, str]:
        """"key:<id>" -> the person whose allowance the key's calls count against (the report by user names both)."""
        with self.db.session() as s:
            return key_owners(session=s, tenant=tenant)

    def raise_allowance(self, principal: Principal, tenant: str, *, subject: str, tokens_per_day: int | None,
                        monthly_budget_usd: float | None, route: str, ip: str | None = None,
                        now: datetime | None = None) -> dict:
        """One member's allowance for the rest of this month (UTC); unset fields keep the configured value."""
        now = now or datetime.now(UTC)
        cfg = self.registry.get(tenant)
        assert cfg is not None
        if not cfg.quotas.has_member_limits:
            raise Conflict(f"{cfg.name} gives its members no allowance (quotas.member in tenants.yaml), so there is "
                           "nothing to raise: every member shares the department's quotas", code="no_member_limits")
        if tokens_per_day is None and monthly_budget_usd is None:
            raise Invalid("give `tokens_per_day`, `monthly_budget_usd` or both: the member's new allowance",
                          code="nothing_to_raise")
        if subject in principal.people or subject == principal.member:
            # An allowance binds the admin too: raising one's own (or one's key's) would make it no limit at all.
            self.audit.record("denied", subject=principal.subject, tenant=tenant, route=route, ip=ip, status=403,
                              detail={"reason": "own_allowance", "member": subject[:256]})
            raise Forbidden(f"a tenant admin cannot raise their own allowance in {cfg.name}: ask another tenant "
                            "admin (each raise is audited)", code="own_allowance")
        with self.db.session() as s:
            self._check_member(s, tenant, subject, cfg.name)
            row = raise_allowance(session=s, tenant=tenant, subject=subject, month=month_id(now),
                                  tokens_per_day=tokens_per_day, monthly_budget_usd=monthly_budget_usd,
                                  granted_by=principal.subject)
        if self.on_raised is not None:  # committed: every replica's next admission reads it
            self.on_raised(tenant)
        detail = {"member": subject[:256], "month": row.month, "tokens_per_day": tokens_per_day,
                  "monthly_budget_usd": monthly_budget_usd}
        self.audit.record("allowance_raised", subject=principal.subject, tenant=tenant, route=route, ip=ip,
                          status=200, detail=detail)
        return {"subject": subject, "month": row.month, "tokens_per_day": tokens_per_day,
                "monthly_budget_usd": monthly_budget_usd, "granted_by": principal.subject,
                "until": next_month(now).isoformat()}


    @staticmethod
    def _check_member(session: Session, tenant: str, subject: str, name: str) -> None:
        """The subject is someone whose calls count against an allowance here: a raise for a typo, another
        tenant's key or a key whose calls count against its owner would silently change nothing."""
        if subject.startswith(KEY_SUBJECT):
            key = get_api_key(session=session, key_id=subject[len(KEY_SUBJECT):])
            if key is None or key.tenant != tenant:
                raise Invalid(f"{name} has no API key {subject}: give a member as the usage report by user names "
                              "them", code="unknown_member")
            if key.owner and key.owner != CLI_OWNER:
                raise Invalid(f"{subject}'s calls count against its owner's allowance: give subject "
                              f"{key.owner!r}", code="key_has_owner")
            return
        if not (has_turns(session=session, tenant=tenant, subject=subject)
                or subject in key_owners(session=session, tenant=tenant).values()
                or get_chat_user(session=session, identifier=subject) is not None):
            raise Invalid(f"{subject!r} has never used {name} nor signed in here: give a member as the usage report "
                          "by user names them", code="unknown_member")


def figures(cfg: TenantConfig, allowance: Allowance, tokens_today: int, month: tuple[int, float],
            now: datetime) -> dict:
    """A member's usage against their allowance: today's tokens, this month's dollars, when each resets."""
    tokens_month, cost_month = month
    tok, usd = allowance.tokens_per_day, allowance.monthly_budget_usd
    return {
        "tenant_name": cfg.name,
        "on_budget": cfg.quotas.on_budget,
        "allowance": {"source": allowance.source, "raised": allowance.raised, "limited": allowance.limited},
        "today": {"tokens": tokens_today, "limit": tok,
                  "remaining": None if tok is None else max(0, tok - tokens_today),
                  "resets_at": (day_start(now) + timedelta(days=1)).isoformat()},
        "month": {"tokens": tokens_month, "cost_usd": round(cost_month, 6), "limit_usd": usd,
                  "remaining_usd": None if usd is None else round(max(0.0, usd - cost_month), 6),
                  "resets_at": next_month(now).isoformat()},
    }
