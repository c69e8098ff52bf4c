"""Atomic admission: sliding-window rate limits and reserved counters (tokens/day, budget/month).

One `admit()` checks every limit of a request and commits all of them or none, atomically:
- in-process: under one lock (one replica);
- Redis: in one Lua script (several replicas share the counters; Redis' clock is the only clock).
So N parallel requests against a limit of K get exactly min(N, K) admissions — no check-then-act race.

Counters are integers (tokens, micro-USD). A counter missing in the backend (new day, restart, Redis
flushed) is seeded from SQL, the source of truth, before it is used.

A counter holds what was *used* (settled); what answers in progress have *reserved* are holds beside it, each
with a lease (Redis: a sorted set of `hold:amount` members scored by their expiry, next to the counter). An
admission counts used + the live holds + its own amount against the limit, and first purges the expired holds —
a process that died mid-answer never renews its holds, so they stop counting a lease after it died, on the next
admission (atomically, in the same script). A living process renews its holds (QuotaService keeps them), and a
settlement removes the hold and adds what the call really used to the counter.
"""

from __future__ import annotations

# The backends and their types, one concept a module; every name is importable from here as before the split.
from backend.governance.ratelimit_memory import MemoryLimits
from backend.governance.ratelimit_redis import RedisLimits, holds_key
from backend.governance.ratelimit_types import Charge, Decision, LimitBackend, Reservation, Window, hold_member

__all__ = ["Charge", "Decision", "LimitBackend", "MemoryLimits", "RedisLimits", "Reservation", "Window", "hold_member",
           "holds_key"]
