"""Wiring: build every service once (constructor injection) and hand them to app, UI and CLI."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.auth.api_keys import KeyCache, people_behind
from backend.auth.claims import claims_to_principal
from backend.auth.demo_users import DEMO_ISSUER, DemoUsers
from backend.auth.guard import AccessGuard, SessionCaller, session_principal
from backend.auth.jwt_verifier import JwtVerifier, build_jwt_verifier
from backend.auth.key_owners import owner_basis
from backend.auth.key_service import KeyService
from backend.auth.oidc import OidcLogin
from backend.auth.password_login import PasswordLogin
from backend.auth.principal import AuthMethod, Principal
from backend.auth.session_cookie import session_token
from backend.auth.sessions import SessionRegistry
from backend.chat.conversations import ConversationService
from backend.chat.pipeline import ChatService
from backend.config_files import ConfigError
from backend.db.engine import Database, make_engine
from backend.db.migrate import prepare
from backend.evals.factory import build_evals
from backend.evals.gate import EvalGate
from backend.evals.service import EvalService, run_public
from backend.governance.alert_once import alert_gate
from backend.governance.allowance_cache import TTL_S as ALLOWANCE_TTL_S
from backend.governance.audit import AuditLog
from backend.governance.audit_view import AuditView
from backend.governance.cache import MemoryCache, RedisCache, ResponseCache
from backend.governance.inflight import InflightLimits
from backend.governance.leases import ProcessLease, new_owner
from backend.governance.member_usage import MemberUsage
from backend.governance.metrics import NoMetrics, PrometheusMetrics
from backend.governance.operators import OperatorConsole
from backend.governance.outbox import Spool
from backend.governance.quota_gauge import quota_used_now
from backend.governance.quotas import QuotaService
from backend.governance.ratelimit import MemoryLimits, RedisLimits
from backend.governance.usage import UsageService, UsageWriter
from backend.knowledge.factory import build_knowledge
from backend.knowledge.service import KnowledgeService
from backend.llm.router import ModelsConfig
from backend.llm.routing import default_classifier
from backend.llm.service import LLMService
from backend.prompts.contract import PromptStorage
from backend.prompts.factory import build_prompt_store
from backend.prompts.service import PromptService
from backend.settings import Settings
from backend.tenants import TenantRegistry
from backend.tracing import setup_tracing

log = logging.getLogger("atrium")
PROCESS_ID = secrets.token_hex(6)  # made once per process: services built twice in one process share it


@dataclass
class Services:
    settings: Settings
    registry: TenantRegistry
    demo_users: DemoUsers
    db: Database
    audit: AuditLog
    prompts: PromptStorage  # files or the database (prompts/factory.py)
    prompt_service: PromptService  # the studio's rules: saves, label moves, previews, tries (and their audit)
    llm: LLMService
    chat: ChatService
    sessions: SessionRegistry  # browser sessions: sign-ins, sign-outs, ended sessions; verifies every session token
    access: AccessGuard  # the one access decision (auth/guard.py), with the audit record of a refusal
    audit_view: AuditView  # the audit log read back: operators across tenants, tenant admins redacted
    operators: OperatorConsole  # the operators' views across tenants (/api/admin/tenants, /admin)
    metrics: NoMetrics = field(default_factory=NoMetrics)  # Prometheus (GET /metrics), or the no-op recorder
    knowledge: KnowledgeService | None = None  # tenant knowledge bases (backend.knowledge)
    quotas: QuotaService | None = None
    inflight: InflightLimits | None = None  # per-tenant caps in this process (tenants.yaml `limits`)
    cache: ResponseCache | None = None
    usage: UsageService | None = None
    member_usage: MemberUsage | None = None  # members' usage against their allowances (/api/me/usage, admins)
    conversations: ConversationService | None = None  # chat history (the Chainlit sidebar)
    evals: EvalService | None = None  # assistants' test cases and evaluation runs (backend/evals)
    eval_gate: EvalGate | None = None  # the release gate over those runs (tenants.yaml release_gate)
    # Bearer JWT verification (None when OIDC_ISSUER / OIDC_API_AUDIENCE are not set).
    jwt_verifier: JwtVerifier | None = None
    # API keys verified in the last few seconds (ATRIUM_API_KEY_CACHE_SECONDS); off unless build_services sets it.
    api_keys: KeyCache = field(default_factory=lambda: KeyCache(ttl_s=0))
    # Tenant API keys as admins manage them (create, review, revoke, each audited); set by build_services.
    keys: KeyService | None = None
    # Browser login through the IdP (set by app.create_app when OIDC_ISSUER and OIDC_CLIENT_ID are set).
    oidc_login: OidcLogin | None = None
    # name -> callable raising on failure; /readyz runs them all
    readiness_checks: dict[str, Callable[[], Any]] = field(default_factory=dict)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # The demo password sign-in (rate-limited, its hashing on threads of its own); None when it is off.
    password_login: PasswordLogin | None = None
    # Which process this is (/healthz): ATRIUM_INSTANCE_ID, or a random id made once per process.
    instance: str = field(default_factory=lambda: PROCESS_ID)

    def principal_from_claims(self, claims: dict, *, auth: AuthMethod = "session") -> Principal:
        if auth == "session" and claims.get("iss") == DEMO_ISSUER:
            # A password login's groups are the users file's, not the ones frozen into the session cookie.
            current = self.demo_users.current_claims(str(claims.get("sub") or ""))
            if current is None:
                raise ValueError(f"the account {claims.get('sub')!r} is no longer in demo_users.yaml: sign in again")
            claims = current
        return claims_to_principal(claims, self.registry, auth=auth)

    def session_caller(self, token: str | None) -> SessionCaller:
        """Who a browser session token is (auth/guard.session_principal bound to this app's sessions and claim
        rules). Sync: one SQL statement (revocations)."""
        return session_principal(token, sessions=self.sessions,
                                 to_principal=lambda claims: self.principal_from_claims(claims, auth="session"))

    def cookie_principal(self, cookies: dict[str, str]) -> Principal | None:
        """The principal of a request's browser session cookie, or None (signed out, ended, expired, unmappable)."""
        return self.session_caller(session_token(cookies)).principal

    def prompt_problems(self) -> dict[str, str]:
        """"tenant/assistant" -> why it has no prompt and the fix, for every configured assistant that cannot
        answer. Read from disk each time (a first version saved in the studio clears it). Not a readiness
        failure: one department's mistake must not take every department's replicas out of service."""
        out: dict[str, str] = {}
        for t in self.registry.all():
            for a in t.assistants:
                if (why := self.prompts.problem(t.id, a.name)) is not None:
                    out[f"{t.id}/{a.name}"] = why
        return out

    def readiness(self) -> dict[str, str]:
        """Part name -> "ok" or the reason it failed."""
        out: dict[str, str] = {}
        for name, check in self.readiness_checks.items():
            try:
                check()
                out[name] = "ok"
            except Exception as exc:  # the point is to name the failing part
                out[name] = f"{type(exc).__name__}: {exc}"[:300]
        return out

    def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("error while closing")


def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Configuration first (a ConfigError names the file and the fix), then the database.
    registry = TenantRegistry.load(settings.config_dir / "tenants.yaml", served=settings.deployment_groups)
    models = ModelsConfig.load(settings.config_dir / "models.yaml")
    registry.check_tiers(models.tiers(), models_path=models.source or settings.config_dir / "models.yaml")
    demo_users = _demo_users(settings)
    if migrate:
        prepare(settings.sql_url, on_start=settings.migrate_on_start)
    db = Database(make_engine(settings.sql_url))
    try:  # spans exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; else the no-op tracer
        setup_tracing()
    except ValueError as exc:  # an endpoint the exporter cannot use: one `error:` line now, not lost spans later
        raise ConfigError(str(exc)) from None
    metrics = _metrics(settings, registry)
    audit = AuditLog(db=db, denial_threshold=settings.suspicious_denials, window_s=settings.suspicious_window_s,
                     group_window_s=settings.audit_denial_window_s, metrics=metrics,
                     known_tenant=lambda tenant: registry.locate(tenant) is not None,  # served here or not
                     alerts=alert_gate(settings.redis_url, prefix=settings.redis_prefix))
    prompts = build_prompt_store(settings, db)
    llm = LLMService(settings=settings, config=models)
    llm.metrics = metrics
    quotas, cache = _governance(settings, registry, db, metrics)
    metrics.watch_quota(lambda: quota_used_now(quotas))  # the share used now, read per scrape
    knowledge = build_knowledge(settings, db=db, registry=registry, audit=audit,
                                embedding_list=llm.config.embedding_list)
    owner = new_owner()  # this process, on its turns in progress (governance/leases.py)
    usage_writer = UsageWriter(db=db, spool=Spool(settings.data_dir / "usage-outbox", owner),
                               linger_s=settings.usage_linger_ms / 1000)
    usage = UsageService(db=db)
    audit_view = AuditView(db=db, audit=audit, registry=registry)
    inflight = InflightLimits(limits=registry.limits, name_of=lambda t: (cfg.name if (cfg := registry.get(t)) else t),
                              metrics=metrics)
    knowledge.inflight = inflight  # standalone searches (API, Dify) count as model calls
    knowledge.metrics = knowledge.worker.metrics = metrics
    metrics.watch_backlog(knowledge.backlog)
    chat = ChatService(db=db, registry=registry, prompts=prompts, llm=llm, quotas=quotas, cache=cache,
                       classifier=default_classifier(), retriever=knowledge, usage_writer=usage_writer,
                       audit=audit, owner=owner, progress_s=settings.turn_progress_s, inflight=inflight,
                       metrics=metrics)
    services = Services(settings=settings, registry=registry, demo_users=demo_users, db=db, audit=audit,
                        prompts=prompts, llm=llm, chat=chat, quotas=quotas, cache=cache, inflight=inflight,
                        prompt_service=PromptService(store=prompts, registry=registry, llm=llm, audit=audit,
                                                     people=lambda names: people_behind(db=db, names=names)),
                        audit_view=audit_view,
                        operators=OperatorConsole(registry=registry, audit=audit, audit_view=audit_view, usage=usage),
                        sessions=SessionRegistry(db=db, registry=registry, max_age_s=settings.session_hours * 3600,
                                                 audit=audit),
                        access=AccessGuard(audit=audit, configured=lambda tenant: registry.get(tenant) is not None),
                        usage=usage, knowledge=knowledge, metrics=metrics,
                        member_usage=MemberUsage(db=db, registry=registry, audit=audit,
                                                 on_raised=quotas.raised.raised),
                        conversations=ConversationService(db=db, registry=registry, audit=audit, chat=chat,
                                                          titles=settings.conversation_titles))
    services.evals = build_evals(settings, services, owner=owner)
    # The prompt service (layer 2) is asked through its ReleaseGate protocol: the gate reads runs, which go through
    # the chat pipeline above it, so it is handed in here rather than imported there.
    services.eval_gate = EvalGate(db=db, kb_version=services.evals.kb_version, run_public=run_public)
    services.prompt_service.gate = services.eval_gate
    for assistant, why in services.prompt_problems().items():
        log.warning("assistant has no prompt", extra={"assistant": assistant, "problem": why})
    if settings.redis_url:
        services.readiness_checks["redis"] = lambda: _ping_redis(settings.redis_url or "")
    services.jwt_verifier = build_jwt_verifier(settings)
    if settings.instance_id:
        services.instance = settings.instance_id
    services.api_keys = KeyCache(ttl_s=settings.api_key_cache_s, owner_basis=lambda key: owner_basis(
        db=db, key=key, principal_of=services.principal_from_claims))
    services.keys = KeyService(db=db, audit=audit, cache=services.api_keys, principal_of=services.principal_from_claims,
                               default_days=settings.api_key_days)
    services.readiness_checks["database"] = db.ping
    services.readiness_checks["models"] = lambda: _require_tiers(llm)
    services.closers.append(db.engine.dispose)
    services.closers.append(audit.alerts.close)
    if settings.password_login_enabled:
        services.password_login = PasswordLogin(users=lambda: services.demo_users, audit=audit)
        services.closers.append(services.password_login.close)
    lease = ProcessLease(db=db, owner=owner, lease_s=settings.lease_s,
                         on_reaped=lambda rows: _charge_reaped(quotas, rows))
    lease.start()
    # Closers run reversed: the writer flushes its last rows, then the lease ends (ending it first would let
    # another process reap those turns as interrupted in between), then the engine is disposed.
    services.closers.append(lease.close)
    services.closers.append(usage_writer.close)
    services.readiness_checks["vector_store"] = knowledge.store.ping
    if settings.ingest_worker:
        knowledge.start_worker()  # resumes jobs a killed process left unfinished
    services.closers.append(knowledge.close)  # runs first (reversed): the worker stops before the engine
    return services


def _demo_users(settings: Settings) -> DemoUsers:
    path = (settings.config_dir / "demo_users.yaml").absolute()
    if settings.password_login_enabled and not path.is_file():
        # Otherwise every demo login just fails as a wrong password, with nothing saying why.
        log.warning("demo login is on but there are no demo users", extra={
            "path": str(path), "fix": "create demo_users.yaml there (atrium hash-password makes hashes), set "
                                      "ATRIUM_CONFIG_DIR to a folder that has one, or ATRIUM_DEV_LOGIN=false"})
    return DemoUsers.load(path)


def _metrics(settings: Settings, registry: TenantRegistry) -> NoMetrics:
    """Collected only when someone can read them (ATRIUM_METRICS_TOKEN): otherwise the no-op recorder."""
    if not settings.metrics_token:
        return NoMetrics()
    # Any tenant of the file is a label value (bounded by configuration); a made-up one is `other`.
    return PrometheusMetrics(known_tenant=lambda tenant: registry.locate(tenant) is not None)


def _governance(settings: Settings, registry: TenantRegistry, db: Database,
                metrics: NoMetrics) -> tuple[QuotaService, ResponseCache]:
    """Quotas, rate limits and the response cache: in-process, or shared in Redis when REDIS_URL is set."""
    if settings.redis_url:
        limits: MemoryLimits | RedisLimits = RedisLimits(settings.redis_url)
        cache_backend: MemoryCache | RedisCache = RedisCache(settings.redis_url)
    else:
        limits, cache_backend = MemoryLimits(), MemoryCache()
    # Members' raised allowances are cached only where every replica's raise bumps the version they are checked
    # against (allowance_cache.py): the counters shared in Redis, or one node; else read from SQL every time.
    quotas = QuotaService(backend=limits, registry=registry, db=db, prefix=settings.redis_prefix,
                          warn_ratio=settings.budget_warning_ratio, lease_s=settings.lease_s, metrics=metrics,
                          allowance_cache_s=ALLOWANCE_TTL_S if settings.redis_url or settings.single_node else 0.0)
    cache = ResponseCache(backend=cache_backend, prefix=settings.redis_prefix, ttl_s=settings.cache_ttl_s,
                          enabled=settings.response_cache)
    return quotas, cache


def _charge_reaped(quotas: QuotaService, rows: list[dict]) -> None:
    """What the turns of a dead process streamed, onto their tenants' counters (their reservations lapsed)."""
    for row in rows:
        quotas.charge_sync(tenant=row["tenant"], at=row["created_at"],
                           tokens=int(row["prompt_tokens"] or 0) + int(row["completion_tokens"] or 0),
                           cost_usd=float(row["cost_usd"] or 0.0), subject=row.get("subject"),
                           assistant=row.get("assistant"), turn=row.get("turn_key"))


def _ping_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _require_tiers(llm: LLMService) -> None:
    if not llm.tiers():
        raise RuntimeError("no model tier is live: " + "; ".join(f"{k}: {v}" for k, v in llm.live.excluded.items()))


_current: Services | None = None


def set_services(services: Services | None) -> None:
    global _current
    _current = services


def get_services() -> Services:
    """The services of the running app (the Chainlit handlers live in the same process)."""
    if _current is None:
        raise RuntimeError("services are not built yet: create the app with app.create_app()")
    return _current
