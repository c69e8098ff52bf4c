"""Per-tenant caps inside one process: model calls in flight, streaming answers open and uploads in progress
(tenants.yaml `limits`).

The rate windows and budgets (quotas.py) bound how much a tenant uses over time; these bound how much of THIS
process it holds at once, so one tenant's burst (a script opening 150 streams) cannot fill the event loop, the
thread pool and the model for everyone else. A turn takes its slot before any thread-pool or model work (the
pipeline, right after the access check), one slot per turn whatever internal calls it makes (a query rewrite,
a title ride on it), and gives it back on every exit path: answered, refused later, failed, cancelled, closed.
A search outside a turn (POST /search, Dify's retrieval) is a model call too (its query's embedding, in a worker
thread): it takes one while it runs (knowledge/service.py).

Over a cap: QuotaExceeded (429) naming the limit and the fix, with a short Retry-After (slots free up as answers
finish). Counters are per process on purpose: the cap protects this process's resources; a tenant spread over
N pods holds at most N × the cap. Plain integers under a threading.Lock: taken and given back from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from backend.errors import QuotaExceeded
from backend.governance.metrics import NoMetrics
from backend.tenants import TenantLimits

log = logging.getLogger("atrium.quotas")

RETRY_AFTER_S = 2  # most answers finish within a few seconds; a client that waits this long usually gets in

# The fix is said to whoever was refused: often not the one holding the slots (a colleague, another script), so
# "retry shortly", not "wait for yours".
_WHAT = {"model_calls": ("model call", "model calls", "in flight", "try again in a few seconds, when one has finished"),
         "streams": ("streaming answer", "streaming answers", "open", "try again in a few seconds, when one has "
                                                                  "ended, or ask without streaming"),
         "uploads": ("upload", "uploads", "in progress", "try again in a few seconds, when one has finished, or "
                                                         "send several files in one request")}
_TURN_KINDS = ("model_calls", "streams")


@dataclass
class Slot:
    """What one turn holds; `release()` is idempotent (every exit path may call it)."""

    tenant: str
    kinds: tuple[str, ...]
    _owner: InflightLimits | None = field(default=None, repr=False)

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._give_back(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class InflightLimits:
    def __init__(self, *, limits: Callable[[str], TenantLimits], name_of: Callable[[str], str] | None = None,
                 retry_after_s: int = RETRY_AFTER_S, metrics: NoMetrics | None = None) -> None:
        """`limits`: the tenant's effective caps (TenantRegistry.limits); `name_of`: its display name; `metrics`:
        refusals counted, and what is held read at each scrape."""
        self.metrics = metrics or NoMetrics()
        self.metrics.watch_inflight(self.snapshot)
        self._limits = limits
        self._name_of = name_of or (lambda tenant: tenant)
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], int] = {}  # (tenant, kind) -> slots held

    def acquire(self, tenant: str, *, stream: bool) -> Slot:
        """A model-call slot, and a stream slot too when the answer streams; raises QuotaExceeded (nothing taken)
        when either cap is reached."""
        return self._take(tenant, ("model_calls", "streams") if stream else ("model_calls",))

    def _take(self, tenant: str, kinds: tuple[str, ...]) -> Slot:
        caps = self._limits(tenant)
        with self._lock:
            for kind in kinds:
                cap = getattr(caps, kind)
                if cap is not None and self._held.get((tenant, kind), 0) >= cap:
                    break
            else:
                for kind in kinds:
                    self._held[(tenant, kind)] = self._held.get((tenant, kind), 0) + 1
                return Slot(tenant, kinds, self)
        raise self._refusal(tenant, kind, cap)

    def upload(self, tenant: str) -> Slot:
        """An upload slot (`limits.uploads`), held while the upload's body is read and its files stored; raises
        QuotaExceeded (nothing taken) when the tenant has that many in progress in this process."""
        return self._take(tenant, ("uploads",))

    def held(self, tenant: str, kinds: tuple[str, ...] = _TURN_KINDS) -> dict[str, int]:
        """What the tenant holds now in this process (for tests, the admin page and the bench)."""
        with self._lock:
            return {kind: self._held.get((tenant, kind), 0) for kind in kinds}

    def snapshot(self) -> dict[tuple[str, str], int]:
        """(tenant, kind) -> slots held now, every tenant (the metrics' in-flight gauge)."""
        with self._lock:
            return dict(self._held)

    def _give_back(self, slot: Slot) -> None:
        with self._lock:
            for kind in slot.kinds:
                left = self._held.get((slot.tenant, kind), 0) - 1
                if left > 0:
                    self._held[(slot.tenant, kind)] = left
                else:
                    self._held.pop((slot.tenant, kind), None)

    def _refusal(self, tenant: str, kind: str, cap: int) -> QuotaExceeded:
        one, many, state, fix = _WHAT[kind]
        msg = (f"{self._name_of(tenant)} already has {cap} {one if cap == 1 else many} {state} "
               f"(tenants.yaml limits.{kind}: {cap}): {fix}; a platform operator can raise the limit.")
        log.info("quota refused", extra={"tenant": tenant, "limit": kind, "retry_after": self.retry_after_s})
        self.metrics.quota_refusal(tenant=tenant, limit=kind)
        return QuotaExceeded(msg, retry_after=self.retry_after_s, limit=kind)
