"""Members' raised allowances (SQL), cached in the process without ever serving one that a raise replaced.

Every admission under member limits needs the member's raise for the month (quotas.py `allowance`): one SQL read in
a worker thread each time. Here an entry is kept with the tenant's allowance *version*, a counter beside the quota
counters (Redis when several replicas share it), which every raise bumps right after its commit
(member_usage.py). An admission reads the version first (one GET on the event loop, no thread) and the SQL row only
when its entry was read under another version: so an admission that starts after a raise returned, on any replica,
reads the raised row — "a raised limit applies at once on every replica" holds.

Where the version is not shared (in-process counters) it only sees this process's raises: the cache is then on only
for a single node (ATRIUM_SINGLE_NODE), and off otherwise (`ttl_s=0`: every admission reads SQL, as before). An entry
also lapses after `ttl_s` (60 s): the bound on a raise whose bump was lost (Redis away at that moment, or flushed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from backend.db.engine import Database
from backend.db.models import MemberAllowance
from backend.governance.allowances import BUDGET_TTL_S
from backend.governance.quota_reads import raised_allowance
from backend.governance.ratelimit import LimitBackend

log = logging.getLogger("atrium.quotas")

TTL_S = 60.0
MAX_ENTRIES = 50_000  # members x tenants in one process's month; past it the cache starts again


class RaisedAllowances:
    def __init__(self, *, db: Database, backend: LimitBackend, version_key: Any, ttl_s: float = TTL_S) -> None:
        """`version_key(tenant)`: the tenant's version counter; `ttl_s=0`: no cache (a SQL read per admission)."""
        self.db = db
        self.backend = backend
        self.version_key = version_key
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, str, str], tuple[MemberAllowance | None, int | None, float]] = {}

    async def get(self, tenant: str, subject: str, month: str) -> MemberAllowance | None:
        """The member's raise for `month` (YYYYMM), or None."""
        if self.ttl_s <= 0:
            return await asyncio.to_thread(raised_allowance, self.db, tenant, subject, month)
        # The version before the row: a raise committed after this read bumps it past what the entry records.
        version = await self.backend.get(self.version_key(tenant))
        key = (tenant, subject, month)
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] == version and hit[2] > now:
            return hit[0]
        row = await asyncio.to_thread(raised_allowance, self.db, tenant, subject, month)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (row, version, now + self.ttl_s)
        return row

    def raised(self, tenant: str) -> None:
        """A tenant admin raised an allowance of `tenant` (committed): every replica's entries of it are stale.
        From a thread (the raise's route is synchronous)."""
        for key in [k for k in self._entries if k[0] == tenant]:
            self._entries.pop(key, None)
        try:
            self.backend.bump_sync(self.version_key(tenant), BUDGET_TTL_S)
        except Exception:  # the raise is in SQL: other replicas read it when their entries lapse (ttl_s)
            log.warning("could not publish an allowance raise; other replicas apply it within the cache's lifetime",
                        extra={"tenant": tenant, "ttl_s": self.ttl_s}, exc_info=True)
