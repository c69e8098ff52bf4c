"""Atomic admission on both backends: parallel requests just over a limit -> exactly the allowed number."""

from __future__ import annotations

import asyncio
import random
import threading
import time

from backend.governance.ratelimit import MemoryLimits, Reservation, Window, hold_member


def test_parallel_requests_over_a_window_limit_admit_exactly_the_limit(make_limits):
    factory, prefix = make_limits
    window = Window(f"{prefix}:rpm", limit=7, window_s=60, name="requests_per_minute")

    async def main():
        replicas = [factory() for _ in range(3)]  # three app replicas racing on the same bucket
        decisions = await asyncio.gather(*(replicas[i % 3].admit([window], []) for i in range(20)))
        for r in replicas:
            await r.close()
        return decisions

    decisions = asyncio.run(main())
    assert sum(d.ok for d in decisions) == 7
    refused = [d for d in decisions if not d.ok]
    assert {d.denied for d in refused} == {"requests_per_minute"}
    assert all(0 < d.retry_after_s <= 60 for d in refused)


def test_threads_racing_on_the_same_bucket(make_limits):
    factory, prefix = make_limits
    window = Window(f"{prefix}:user", limit=5, window_s=60, name="user_requests_per_minute")
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def worker():
        async def one():
            backend = factory()
            barrier.wait()
            d = await backend.admit([window], [])
            await backend.close()
            return d.ok
        ok = asyncio.run(one())
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True] * 5


def test_reservations_are_all_or_nothing_and_atomic(make_limits):
    factory, prefix = make_limits
    tenant_rpm = Window(f"{prefix}:rpm", limit=100, window_s=60, name="requests_per_minute")
    tokens = Reservation(f"{prefix}:tokens", limit=100, amount=30, ttl_s=600, name="tokens_per_day",
                         seed=lambda: 0)

    async def main():
        backend = factory()
        decisions = await asyncio.gather(*(backend.admit([tenant_rpm], [tokens]) for _ in range(8)))
        used, held = await backend.get(tokens.key), await backend.held(tokens.key)
        # The refused ones took no request slot: 97 more fit in the window.
        more = await asyncio.gather(*(backend.admit([tenant_rpm], []) for _ in range(98)))
        await backend.close()
        return decisions, used, held, more

    decisions, used, held, more = asyncio.run(main())
    assert sum(d.ok for d in decisions) == 3  # 3 x 30 <= 100 < 4 x 30
    assert (used, held) == (0, 90)  # nothing used yet: three answers in progress hold 30 each
    assert sorted(d.held[tokens.key] for d in decisions if not d.ok) == [90] * 5
    assert {d.denied for d in decisions if not d.ok} == {"tokens_per_day"}
    assert sum(d.ok for d in more) == 97


def test_missing_counter_is_seeded_and_adjust_settles(make_limits):
    factory, prefix = make_limits
    seeded = []

    def seed():
        seeded.append(1)
        return 60

    budget = Reservation(f"{prefix}:usd", limit=100, amount=30, ttl_s=600, name="monthly_budget_usd", seed=seed)

    async def main():
        backend = factory()
        first = await backend.admit([], [budget], hold="h1")  # 60 (from SQL) + 30 held
        second = await backend.admit([], [budget], hold="h2")  # 60 + 30 held + 30 > 100
        await backend.settle(budget.key, hold_member("h1", 30), 5, 600)  # the call really cost 5, not 30
        third = await backend.admit([], [budget], hold="h3")  # 65 + 30
        value, held = await backend.get(budget.key), await backend.held(budget.key)
        await backend.close()
        return first, second, third, value, held

    first, second, third, value, held = asyncio.run(main())
    assert seeded == [1]
    assert (first.ok, first.used[budget.key], first.held[budget.key]) == (True, 60, 0)
    assert (second.ok, second.denied, second.used, second.held) == (False, "monthly_budget_usd", {budget.key: 60},
                                                                     {budget.key: 30})
    assert third.ok and (value, held) == (65, 30)


def test_a_hold_nobody_renews_lapses_and_is_purged_by_the_next_admission(make_limits):
    """A process that died stops renewing: its reservation stops counting one lease later, purged by the next
    admission (bounded polling on the backend's own clock, no timing assertion)."""
    factory, prefix = make_limits
    tokens = Reservation(f"{prefix}:tok", limit=100, amount=60, ttl_s=600, name="tokens_per_day", seed=lambda: 0)

    async def main():
        backend = factory()
        assert (await backend.admit([], [tokens], hold="dead", lease_s=1.0)).ok
        first = await backend.admit([], [tokens], hold="alive", lease_s=30.0)  # 60 held + 60 > 100
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            later = await backend.admit([], [tokens], hold="alive", lease_s=30.0)
            if later.ok:
                break
            await asyncio.sleep(0.2)
        held = await backend.held(tokens.key)
        await backend.close()
        return first, later, held

    first, later, held = asyncio.run(main())
    assert (first.ok, first.held[tokens.key]) == (False, 60)
    assert later.ok and later.held[tokens.key] == 0  # `dead` lapsed and was purged by this admission
    assert held == 60  # `alive` now


def test_a_renewed_hold_keeps_counting_past_its_first_lease():
    now = [1000.0]
    backend = MemoryLimits(clock=lambda: now[0])
    tokens = Reservation("t:tok", limit=100, amount=60, ttl_s=600, name="tokens_per_day", seed=lambda: 0)

    async def run():
        assert (await backend.admit([], [tokens], hold="a", lease_s=10)).ok
        for _ in range(5):  # 25 s, renewed every 5 s
            now[0] += 5
            await backend.renew([(tokens.key, hold_member("a", 60))], 10)
        kept = await backend.held(tokens.key)
        now[0] += 10.5  # not renewed for a lease
        return kept, await backend.held(tokens.key)

    assert asyncio.run(run()) == (60, 0)


def test_sliding_window_frees_slots_as_time_passes():
    now = [1000.0]
    backend = MemoryLimits(clock=lambda: now[0])
    window = Window("t:rpm", limit=2, window_s=60, name="requests_per_minute")

    async def admit():
        return await backend.admit([window], [])

    assert asyncio.run(admit()).ok
    now[0] += 30
    assert asyncio.run(admit()).ok
    refused = asyncio.run(admit())
    assert not refused.ok and refused.retry_after_s == 30  # the first hit leaves the window in 30 s
    now[0] += 30.5
    assert asyncio.run(admit()).ok


def test_the_in_process_holds_total_matches_a_sum_of_the_live_leases():
    """MemoryLimits keeps each counter's held total as holds come and go (it sums them again only once a lease may
    have lapsed): after any mix of admissions, settlements, renewals and lapsed leases, what it says is held is the
    sum of the leases still running, and a settled or lapsed hold is gone."""
    now = [1000.0]
    backend = MemoryLimits(clock=lambda: now[0])
    rng = random.Random(18)
    leases: dict[str, tuple[int, float]] = {}  # the model: member -> (amount, lease end)

    async def run() -> int:
        checked = 0
        for step in range(3000):
            op = rng.random()
            if op < 0.4:
                hold, amount, lease = f"h{step}", rng.randint(1, 50), rng.choice([1.0, 5.0, 30.0])
                r = Reservation("t:tok", limit=10**9, amount=amount, ttl_s=600, name="tokens_per_day")
                assert (await backend.admit([], [r], hold=hold, lease_s=lease)).ok
                leases[hold_member(hold, amount)] = (amount, now[0] + lease)
            elif op < 0.6 and leases:
                member = rng.choice(sorted(leases))
                await backend.settle_many([("t:tok", member, 0, 600)])
                del leases[member]
            elif op < 0.75 and leases:
                members, lease = rng.sample(sorted(leases), k=min(3, len(leases))), rng.choice([0.3, 5.0, 60.0])
                await backend.renew([("t:tok", m) for m in members], lease)  # a shorter lease, too
                for m in members:
                    leases[m] = (leases[m][0], now[0] + lease)
            else:
                now[0] += rng.choice([0.1, 0.5, 2.0])
            live = sum(amount for amount, until in leases.values() if until > now[0])
            assert await backend.held("t:tok") == live
            checked += 1
            for m in [m for m, (_, until) in leases.items() if until <= now[0]]:
                del leases[m]  # lapsed: purged by the read above
        return checked

    assert asyncio.run(run()) == 3000
