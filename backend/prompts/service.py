"""The prompt studio's rules: reading a tenant's prompts, saving a version, moving a label, previewing and
preparing a try. The /api/t/{tenant}/prompts routes only parse and shape; what is valid, what conflicts, who may
approve, and the audit record of every write (with before/after) and of every refusal are here.

Access to the routes themselves (prompts:read / prompts:write) is checked before these methods run; the four-eyes
rule for production (release.py) is checked here, since it depends on who wrote the version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.auth.guard import AuditSink, allowed
from backend.auth.principal import Principal
from backend.errors import Conflict, Forbidden, Invalid, NotFound
from backend.prompts.contract import (
    InvalidPromptName,
    PromptNotFound,
    PromptStorage,
    PromptVersion,
    VersionConflict,
)
from backend.prompts.diff import diff_versions
from backend.prompts.drafts import draft, invalid
from backend.prompts.release import (
    PRODUCTION,
    GateVerdict,
    ReleaseGate,
    approval_refusal,
    can_approve,
    override_refusal,
)
from backend.prompts.schema import KNOWN_VARIABLES, Problem, PromptValidationError
from backend.tenants import TenantConfig, TenantRegistry

# Labels every assistant may have without asking for them; any other is created only on request (a typo is refused).
STANDARD_LABELS = ("production", "staging")


class LiveTiers(Protocol):
    """What the studio needs to know of the models (the LLM service): which tiers answer now, and which one
    answers for a tier that does not."""

    def tiers(self) -> list[str]: ...

    def tier_models(self) -> dict[str, dict[str, Any]]: ...

    def resolve_tier(self, wanted: str, allowed: list[str]) -> str: ...


@dataclass(frozen=True)
class Trial:
    """A version (saved, or an unsaved draft numbered 0) about to answer a test question, and what to warn about."""

    tenant: TenantConfig
    prompt: PromptVersion
    warnings: list[str] = field(default_factory=list)


class PromptService:
    def __init__(self, *, store: PromptStorage, registry: TenantRegistry, llm: LiveTiers, audit: AuditSink,
                 people: Callable[[Iterable[str]], frozenset[str]], gate: ReleaseGate | None = None) -> None:
        """`people`: names -> the same names plus the owner of each "key:<id>" among them (auth.api_keys
        people_behind), so a version saved with a key counts as its owner's for the four-eyes rule. `gate`: the
        release gate (evals), injected by the container; None = no gate (as when a tenant has it off)."""
        self.gate = gate
        self.store = store
        self.registry = registry
        self.llm = llm
        self.audit = audit
        self.people = people

    # -- lookups -------------------------------------------------------------------------------------------------

    def tenant(self, tenant: str) -> TenantConfig:
        cfg = self.registry.get(tenant)
        if cfg is None:
            raise NotFound(f"unknown tenant {tenant!r}", code="tenant_not_found")
        return cfg

    def assistant_tenant(self, tenant: str, assistant: str) -> TenantConfig:
        """The tenant's config, once `assistant` is known to be one of its assistants (else NotFound)."""
        cfg = self.tenant(tenant)
        if cfg.assistant(assistant) is None:
            raise NotFound(f"{cfg.name} has no assistant {assistant!r} (assistants: "
                           f"{', '.join(a.name for a in cfg.assistants)})", code="assistant_not_found")
        try:
            self.store.check_names(tenant, assistant)
        except InvalidPromptName as exc:
            raise NotFound(str(exc), code="assistant_not_found") from exc
        return cfg

    def get(self, tenant: str, assistant: str, version: int) -> PromptVersion:
        try:
            return self.store.get(tenant, assistant, version)
        except PromptNotFound as exc:
            raise NotFound(f"{assistant} has no version {version}", code="version_not_found") from exc

    def _history(self, tenant: str, assistant: str) -> list[dict[str, Any]]:
        return list(reversed(self.store.label_history(tenant, assistant)))

    def tier_note(self, cfg: TenantConfig, tier: Any, answered_by: str | None = None, model: str = "") -> str | None:
        """A prompt's tier that is not live is answered by another one (the chat does the same, silently): say so
        where the editor tries and reviews it."""
        if not isinstance(tier, str) or not tier or tier in self.llm.tiers():
            return None
        if answered_by is None:
            try:
                answered_by = self.llm.resolve_tier(tier, cfg.model_policy.allowed_tiers)
            except RuntimeError:  # the LLM service's NoModelAvailable
                return f"{tier} is not available now, and no other allowed tier is"
            return f"{tier} is not available now: until it is, answers come from {answered_by}"
        return f"{tier} is not available now: answered by {answered_by}" + (f" ({model})" if model else "")

    # -- reading -------------------------------------------------------------------------------------------------

    def overview(self, tenant: str) -> dict[str, Any]:
        """The tenant's assistants with their labels and version counts."""
        cfg = self.tenant(tenant)
        items = []
        for a in cfg.assistants:
            versions = self.store.versions(tenant, a.name)
            items.append({"name": a.name, "title": a.title, "description": a.description,
                          "labels": self.store.labels(tenant, a.name),
                          "latest": versions[-1] if versions else 0, "versions": len(versions)})
        return {"tenant": tenant, "tenant_name": cfg.name, "require_approval": cfg.require_approval,
                "assistants": items}

    def assistant(self, principal: Principal, tenant: str, assistant: str) -> dict[str, Any]:
        """One assistant's versions, labels and history, what an editor may choose, and what `principal` may do."""
        cfg = self.assistant_tenant(tenant, assistant)
        a = cfg.assistant(assistant)
        assert a is not None
        versions = [self.store.get(tenant, assistant, n).summary()
                    for n in reversed(self.store.versions(tenant, assistant))]
        return {
            "name": assistant, "title": a.title, "description": a.description,
            "versions": versions, "latest": versions[0]["version"] if versions else 0,
            "labels": self.store.labels(tenant, assistant),
            "history": self._history(tenant, assistant),
            "require_approval": cfg.require_approval,
            "variables_available": KNOWN_VARIABLES,
            "tiers": cfg.model_policy.allowed_tiers, "default_tier": cfg.model_policy.default_tier,
            "live_tiers": self.llm.tiers(), "tier_models": self.llm.tier_models(),
            "you": {"subject": principal.subject, "can_write": allowed(principal, tenant, "prompts:write"),
                    "can_approve": can_approve(principal, cfg), "is_admin": allowed(principal, tenant, "admin")},
            "release_gate": cfg.release_gate.model_dump(),
        }

    def version(self, tenant: str, assistant: str, version: int) -> dict[str, Any]:
        self.assistant_tenant(tenant, assistant)
        pv = self.get(tenant, assistant, version)
        labels = self.store.labels(tenant, assistant)
        return {**pv.summary(), "body": pv.body, "config": pv.config,
                "labels": sorted(k for k, v in labels.items() if v == version)}

    def diff(self, tenant: str, assistant: str, from_: int, to: int) -> dict[str, Any]:
        self.assistant_tenant(tenant, assistant)
        return diff_versions(self.get(tenant, assistant, from_), self.get(tenant, assistant, to))

    # -- writing -------------------------------------------------------------------------------------------------

    def save(self, principal: Principal, tenant: str, assistant: str, *, body: str, config: dict[str, Any],
             message: str, base_version: int, route: str) -> dict[str, Any]:
        """A new version on top of `base_version` (every problem at once, or a conflict naming the newer one);
        audited as `prompt_version_created` with the base version's summary and the new one's."""
        cfg = self.assistant_tenant(tenant, assistant)
        problems: list[Problem] = []
        if not message.strip():
            problems.append(Problem("message", "describe your change in a few words (it is shown in the history)"))
        if base_version > (latest := self.store.latest(tenant, assistant)):
            # Not a conflict: nobody saved after it, the version never existed (a stale or mistyped number).
            problems.append(Problem("base_version", f"version {base_version} does not exist; the latest is "
                                                    f"{latest}: start from it"))
        try:  # the tenant's tier policy, the schema and the template: every problem at once
            draft(cfg, tenant, assistant, body, config, who=principal.subject)
        except Invalid as exc:
            problems.extend(Problem(**p) for p in exc.extra["problems"])
        if problems:
            raise invalid(problems)
        try:
            pv, report = self.store.create_version(
                tenant, assistant, body=body, config=config, message=message.strip(),
                author=principal.subject, author_for=principal.acting_for, base_version=base_version)
        except PromptValidationError as exc:
            raise invalid(exc.problems) from None
        except VersionConflict as exc:
            raise self._conflict(tenant, assistant, exc) from None
        before = self.store.get(tenant, assistant, base_version).summary() if base_version else None
        self.audit.record("prompt_version_created", subject=principal.subject, tenant=tenant, route=route,
                          status=201, detail={"assistant": assistant, "before": before, "after": pv.summary()})
        return {**pv.summary(), "body": pv.body, "config": pv.config, "warnings": report.warnings}

    def _conflict(self, tenant: str, assistant: str, exc: VersionConflict) -> Conflict:
        newer = self.store.get(tenant, assistant, exc.latest) if exc.latest else None
        # `author_for`: a save made with an API key is its creator's, so the studio can say "you saved…".
        latest = {**newer.summary(), "author_for": newer.config.get("author_for")} if newer else None
        return Conflict(
            f"version {exc.latest} was saved by {latest and latest['author']} after you started from version "
            f"{exc.base_version}; nothing was overwritten — compare with version {exc.latest} and save again "
            f"on top of it", code="version_conflict",
            extra={"latest_version": exc.latest, "latest": latest, "base_version": exc.base_version},
        )

    def move_label(self, principal: Principal, tenant: str, assistant: str, label: str, *, version: int,
                   create: bool, route: str, override_reason: str | None = None) -> dict[str, Any]:
        """Point `label` at `version`: a label that does not exist yet only with `create`; production under the
        tenant's approval rule and release gate (a refusal is a `denied` audit event; a tenant admin may override a
        closed gate with `override_reason`, audited as `release_gate_overridden`). Audited as `prompt_label_moved`."""
        cfg = self.assistant_tenant(tenant, assistant)
        target = self.get(tenant, assistant, version)
        existing = self.store.labels(tenant, assistant)
        if label not in existing and label not in STANDARD_LABELS and not create:
            raise Invalid(f"{assistant} has no label {label!r} (it has: {', '.join(sorted(existing)) or 'none'}); "
                          'send "create": true to create it', code="unknown_label")
        # People, not credentials: a version saved with a key (or a key made by a key) is its owner's.
        authors = self.people(str(a) for a in (target.config.get("author"), target.config.get("author_for")) if a)
        refusal = approval_refusal(principal, cfg, label, authors)
        if refusal:
            self.audit.record("denied", subject=principal.subject, tenant=tenant, route=route, status=403,
                              reason="approval_required",
                              detail={"assistant": assistant, "label": label, "version": version})
            raise Forbidden(refusal, code="approval_required")
        verdict = self._gate(principal, cfg, assistant, label, version, existing.get(label),
                             (override_reason or "").strip(), route)
        try:
            move = self.store.move_label(tenant, assistant, label, version, who=principal.subject)
        except InvalidPromptName as exc:
            raise Invalid(str(exc), code="invalid_label") from None
        gate = None if verdict is None else {"state": verdict.state, "run": verdict.run,
                                             "overridden": not verdict.ok}
        self.audit.record("prompt_label_moved", subject=principal.subject, tenant=tenant, route=route, status=200,
                          detail={"assistant": assistant, "label": label, "before": move.before,
                                  "after": move.after, **({"gate": gate} if gate else {})})
        return {"label": label, "from": move.before, "to": move.after, "entry": move.entry,
                "labels": self.store.labels(tenant, assistant), "history": self._history(tenant, assistant),
                "gate": gate}

    def _gate(self, principal: Principal, cfg: TenantConfig, assistant: str, label: str, version: int,
              current: int | None, reason: str, route: str) -> GateVerdict | None:
        """The release gate's verdict on moving production to `version` (None: not asked — another label, no gate,
        or a rollback), refusing a closed gate unless a tenant admin overrides it with a reason.

        A rollback (to a version production already had) is not gated: it restores what users were served before,
        and an incident must not wait for a test run."""
        if label != PRODUCTION or self.gate is None or not cfg.release_gate.enabled or version == current:
            return None
        if self.was_in_production(cfg.id, assistant, version):
            return None
        verdict = self.gate.verdict(cfg, assistant, version=version, production=current)
        if verdict.ok:
            return verdict
        where = {"assistant": assistant, "label": label, "version": version, "state": verdict.state,
                 "run": verdict.run, "failing": [c.get("id") for c in verdict.failing][:50]}
        if not reason:
            # Its own kind, not a grouped `denied`: no access was refused (and nothing suspicious happened), a policy
            # was, and each refusal keeps the cases that stopped it.
            self.audit.record("release_gate_refused", subject=principal.subject, tenant=cfg.id, route=route,
                              status=409, reason="release_gate", detail=where)
            # The refusal names the way out: a regression is fixed in the prompt (running it again cannot help).
            fix = (" To release it: fix the prompt, save it as a new version and run its tests." if
                   verdict.state in ("regressed", "below_min") else "")
            anyway = (" A tenant admin may promote it anyway with a reason (override_reason; audited)." if
                      allowed(principal, cfg.id, "admin") else
                      " Or ask a tenant admin of the department to promote it anyway with a reason.")
            raise Conflict(verdict.message + fix + anyway,
                           code="release_gate", extra={"state": verdict.state, "failing": verdict.failing,
                                                       "run": verdict.run})
        if refusal := override_refusal(principal, cfg):
            self.audit.record("denied", subject=principal.subject, tenant=cfg.id, route=route, status=403,
                              reason="release_gate_override", detail=where)
            raise Forbidden(refusal, code="release_gate_override")
        self.audit.record("release_gate_overridden", subject=principal.subject, tenant=cfg.id, route=route,
                          status=200, detail={**where, "reason": reason[:1000], "message": verdict.message})
        return verdict

    def was_in_production(self, tenant: str, assistant: str, version: int) -> bool:
        """Production pointed at `version` before: moving it back is a rollback, which the release gate lets through."""
        return any(e.get("label") == PRODUCTION and version in (e.get("from"), e.get("to"))
                   for e in self.store.label_history(tenant, assistant))

    # -- drafts --------------------------------------------------------------------------------------------------

    def preview(self, principal: Principal, tenant: str, assistant: str, *, body: str, config: dict[str, Any],
                base_version: int) -> dict[str, Any]:
        """Validate an unsaved draft and diff it against its base version (nothing is written)."""
        cfg = self.assistant_tenant(tenant, assistant)
        try:
            unsaved, warnings = draft(cfg, tenant, assistant, body, config, who=principal.subject)
        except Invalid as exc:
            return {"ok": False, "problems": exc.extra["problems"], "warnings": [], "diff": None}
        base = self.get(tenant, assistant, base_version) if base_version else \
            PromptVersion(tenant, assistant, 0, "", {})
        if note := self.tier_note(cfg, unsaved.config.get("tier")):
            warnings = [*warnings, note]
        return {"ok": True, "problems": [], "warnings": warnings, "diff": diff_versions(base, unsaved)}

    def trial(self, principal: Principal, tenant: str, assistant: str, *, version: int | None, body: str | None,
              config: dict[str, Any]) -> Trial:
        """The version a test question is answered with: an unsaved draft (`body`, validated like a save) or a
        saved `version`. The answer itself is the chat's (the prompts package sits below it)."""
        cfg = self.assistant_tenant(tenant, assistant)
        if body is not None:
            prompt, warnings = draft(cfg, tenant, assistant, body, config, who=principal.subject)
            return Trial(cfg, prompt, warnings)
        if version is not None:
            return Trial(cfg, self.get(tenant, assistant, version))
        raise Invalid("send either `body` (an unsaved draft, with its `config`) or `version`",
                      code="invalid_request")

    def trial_reply(self, trial: Trial, answer: dict[str, Any], *, tier: str | None, model: str) -> dict[str, Any]:
        """The chat's public answer to a trial, with which version answered and every warning."""
        out = dict(answer)
        out["prompt_version"] = trial.prompt.version or None
        out["draft"] = trial.prompt.version == 0
        warnings = trial.warnings
        if note := self.tier_note(trial.tenant, trial.prompt.config.get("tier"), tier, model):
            warnings = [note, *warnings]
        out["warnings"] = [*warnings, *out.get("warnings", [])]
        return out
