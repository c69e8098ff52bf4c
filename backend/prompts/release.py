"""Release rules: who may move which label (the four-eyes rule for `production` when a tenant asks), and the shape
of the release gate's verdict (the gate itself needs test runs: backend/evals/gate.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.auth.guard import allowed
from backend.auth.principal import Principal
from backend.tenants import TenantConfig

PRODUCTION = "production"


def approval_refusal(principal: Principal, tenant: TenantConfig, label: str,
                     authors: frozenset[str] | set[str]) -> str | None:
    """Why `principal` may not move `label` to a version written by `authors` (the author, and for a version
    saved with an API key the person who owns the key: the root of its chain, see people_behind), or None when
    allowed. `principal.people` likewise counts a key's owner (Principal.acting_for).

    With `require_approval: true`, production only moves when a tenant admin who did not write the
    version approves it by moving the label: nobody ships their own prompt alone, not even through an API
    key they minted for themselves.
    """
    if label != PRODUCTION or not tenant.require_approval:
        return None
    if not allowed(principal, tenant.id, "admin"):
        return (f"{tenant.name} requires approval: only a tenant admin can move production. "
                "Promote to staging and ask an admin to approve it.")
    if principal.people & set(authors):
        return (f"{tenant.name} requires approval by a second person: you wrote this version, so another "
                "tenant admin must promote it to production.")
    return None


def can_approve(principal: Principal, tenant: TenantConfig) -> bool:
    return not tenant.require_approval or allowed(principal, tenant.id, "admin")


@dataclass(frozen=True)
class GateVerdict:
    """What the release gate (backend/evals/gate.py, a tenant policy) says of promoting one version to production.
    `state`: off | passed | missing | stale | regressed | below_min | running; `failing`: the cases that stop it
    ({"id", "question", "why"}); `run`: the run it judged (or None)."""

    state: str
    message: str
    failing: list[dict[str, Any]] = field(default_factory=list)
    run: str | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("off", "passed")


class ReleaseGate(Protocol):
    """The gate as the prompt service sees it. The prompts package sits below the evaluation runs (which run the chat
    pipeline), so the container injects the implementation instead of prompts importing it."""

    def verdict(self, tenant: TenantConfig, assistant: str, *, version: int,
                production: int | None) -> GateVerdict: ...


def override_refusal(principal: Principal, tenant: TenantConfig) -> str | None:
    """Why `principal` may not override a closed release gate, or None. Only a tenant admin may; the four-eyes rule
    (approval_refusal) still applies on top, so with `require_approval` the override is a second person's too."""
    if allowed(principal, tenant.id, "admin"):
        return None
    return (f"only a tenant admin of {tenant.name} can override the release gate: fix the failing cases, or ask an "
            "admin to promote it with a reason")
