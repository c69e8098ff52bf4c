"""The pipeline's first stage, admit: who may ask (re-checked on every turn, whatever the UI showed), the
message's limits, the turn's usage row (not yet written), the prompt version and the tier, and the response
cache. A mixin of ChatService (backend/chat/pipeline.py), whose attributes it reads.
"""

from __future__ import annotations

from dataclasses import replace

from backend.auth.guard import AccessGuard
from backend.auth.principal import Principal
from backend.auth.request_context import client_ip
from backend.chat.cache import TurnCache
from backend.chat.compose import last_user_text, signoff
from backend.chat.continuation import continuation_of, without_signoff
from backend.chat.turn import Turn, member_of
from backend.chat.types import MAX_MESSAGE_CHARS, ChatRequest, TurnResult
from backend.db.repositories.usage import new_turn
from backend.errors import Forbidden, Invalid, NotFound
from backend.governance.audit import AuditLog
from backend.governance.metrics import NoMetrics
from backend.governance.quotas import QuotaService
from backend.llm.routing import QueryClassifier, decide
from backend.llm.service import LLMService
from backend.prompts.contract import PromptNotFound, PromptStorage, PromptVersion
from backend.tenants import ModelPolicy, TenantRegistry

# What a turn needs besides membership, by the channel it came from (everything else needs `chat`).
_PERMISSION: dict[str, str | None] = {"studio": "prompts:write", "eval": "prompts:write", "internal": None}


class AdmitStage:
    """Access, the message's limits, the prompt and the tier, a cached answer."""

    access: AccessGuard
    audit: AuditLog | None
    registry: TenantRegistry
    prompts: PromptStorage
    llm: LLMService
    quotas: QuotaService | None
    turn_cache: TurnCache
    classifier: QueryClassifier | None
    metrics: NoMetrics

    # -- authorisation: re-checked on every turn, whatever the UI showed --------------------------------

    def authorize(self, principal: Principal, tenant: str, assistant: str | None, *,
                  permission: str | None = "chat", route: str = "chat") -> None:
        """`assistant=None`: a plain completion (no assistant involved). `permission`: what the turn needs —
        `chat`, a studio try `prompts:write`, an internal task (a title, a query rewrite) only membership."""
        self.access.check(principal, tenant, permission, route=route, ip=client_ip.get())
        cfg = self.registry.get(tenant)
        assert cfg is not None  # the guard refuses a tenant that is not configured
        if assistant is not None and cfg.assistant(assistant) is None:
            self.audit_foreign_assistant(principal, tenant, assistant, route="chat:assistant")
            # the caller is a member (checked above): naming the tenant's own assistants is the fix, not a leak
            names = ", ".join(a.name for a in cfg.assistants)
            raise NotFound(f"tenant {tenant!r} has no assistant {assistant!r}; it has: {names}",
                           code="assistant_not_found")

    def audit_foreign_assistant(self, principal: Principal, tenant: str, name: str, *, route: str) -> None:
        """Asking one tenant for another tenant's assistant is a probe (a typo names nothing): a 404 either way,
        audited for operators, as a probe of another tenant's document id is. Every tenant of the file, served by
        this process's deployment groups or not: another group's department is probed all the same."""
        if self.audit is None or not any(t.id != tenant and t.assistant(name) for t in self.registry.every()):
            return
        self.audit.record("denied", subject=principal.subject, tenant=tenant, route=route, status=404,
                          ip=client_ip.get(), reason="other_tenants_assistant", detail={"assistant": name[:64]})

    # -- admit: access, the message's limits, the tier, the response cache ------------------------------------------

    def _admit(self, principal: Principal, req: ChatRequest) -> Turn:
        """Access (audited when refused) and the message's size; the turn's usage row, not yet written."""
        plain = req.messages is not None
        # A label other than production (the staging profile) is for prompt editors, whatever the channel.
        permission = "prompts:write" if not plain and req.label != "production" else _PERMISSION.get(req.channel,
                                                                                                    "chat")
        self.authorize(principal, req.tenant, None if plain else req.assistant, permission=permission,
                       route=f"chat:{req.channel}")
        if len(req.message) > MAX_MESSAGE_CHARS:
            raise Invalid(f"the message is too long ({len(req.message):,} characters; the limit is "
                          f"{MAX_MESSAGE_CHARS:,}): shorten it, or add long text to the knowledge base as a document",
                          code="message_too_long")
        tenant_cfg = self.registry.get(req.tenant)
        assert tenant_cfg is not None
        # An internal task is recorded under the assistant it ran for (usage by assistant includes it).
        row = new_turn(tenant=req.tenant, subject=principal.subject, channel=req.channel,
                       assistant=(req.assistant or None) if plain else req.assistant,
                       prompt_name=(req.task if plain else req.assistant),
                       prompt_label=None if plain else req.label)
        turn = Turn(principal=principal, req=req, row=row, policy=tenant_cfg.model_policy, tenant_name=tenant_cfg.name)
        if not plain:  # "continue" right after an answer cut at the length limit (chat/continuation.py)
            turn.continuation = continuation_of(req.message, req.history, last_answer_cut=req.last_answer_cut)
        return turn

    def _route(self, t: Turn) -> None:
        """The prompt version and the tier (with the reason, for the usage row); a max_tokens the tier cannot
        write is refused here, before the Router would hand the call to another tier."""
        req = t.req
        t.prompt = None if t.plain else (req.prompt_override or self._prompt(req))
        t.row.prompt_version = (t.prompt.version or None) if t.prompt else None
        if t.continuation is not None:  # the cut answer as the model wrote it, without the pipeline's sign-off
            t.continuation = replace(t.continuation, cut=without_signoff(t.continuation.cut, signoff(t.prompt)))
        t.tier, t.row.route_reason = self._tier(req, t.policy, t.prompt,
                                                asked=t.continuation.question if t.continuation else None)
        if t.continuation is not None:
            t.row.route_reason += "; continues the previous answer, cut at the length limit"
        t.row.tier = t.tier
        if req.max_tokens and (cap := self.llm.max_output_tokens(t.tier)) and req.max_tokens > cap[0]:
            # The provider would refuse it (400), and the Router would then hand the call to another tier.
            raise Invalid(f"max_tokens {req.max_tokens} is more than the {t.tier} tier can write ({cap[0]} for "
                          f"{cap[1]}); lower max_tokens", code="max_tokens_too_large")

    async def _cached(self, t: Turn) -> TurnResult | None:
        """A cached answer to this first-turn question (it still counts as a request, but costs nothing)."""
        t.cache_key = self.turn_cache.key(req=t.req, tier=t.tier, prompt=t.prompt, principal=t.principal)
        cached = await self.turn_cache.get(t.cache_key)
        if t.cache_key is not None:
            self.metrics.cache_lookup(tenant=t.req.tenant, hit=cached is not None)
        if cached is None:
            return None
        if self.quotas:
            await self.quotas.admit(tenant=t.req.tenant, subject=t.principal.member, **member_of(t))
        return self.turn_cache.hit(cached=cached, req=t.req, turn=t.row)

    def _tier(self, req: ChatRequest, policy: ModelPolicy, prompt: PromptVersion | None,
              asked: str | None = None) -> tuple[str, str]:
        """`asked`: the question routed in place of the message (a continuation goes on with its question's tier)."""
        if req.task:
            tier = self.llm.internal_tier(policy.allowed_tiers)
            return tier, f"internal task {req.task}: {tier}"
        if req.tier and req.tier not in policy.allowed_tiers:
            raise Forbidden(f"tier {req.tier!r} is not allowed for tenant {req.tenant!r}; allowed: "
                            f"{', '.join(policy.allowed_tiers)}", code="tier_not_allowed")
        if req.tier or policy.routing != "auto":  # only auto routing reads the message (decide's classifier)
            text, previous = "", None
        elif req.messages:
            text, previous = last_user_text(req.messages) or "", last_user_text(req.messages, skip=1)
        else:
            text, previous = asked or req.message, last_user_text(req.history)
        decision = decide(text=text, routing=policy.routing, explicit_tier=req.tier,
                          prompt_tier=str(prompt.config.get("tier") or "") or None if prompt else None,
                          default_tier=policy.default_tier, classifier=self.classifier, previous=previous)
        tier = self.llm.resolve_tier(decision.wanted, policy.allowed_tiers)
        reason = decision.reason if tier == decision.wanted else f"{decision.reason} (not live: using {tier})"
        return tier, reason

    def _prompt(self, req: ChatRequest) -> PromptVersion:
        # A label nobody set is the caller's 404; an assistant with no prompt file to answer with is the server's
        # misconfiguration, raised by the store as PromptNotAvailable (503, naming the folder and the fix).
        try:
            return self.prompts.resolve(req.tenant, req.assistant, req.label)
        except PromptNotFound as exc:
            raise NotFound(str(exc), code="prompt_not_found") from exc
