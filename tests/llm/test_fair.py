"""The in-process model's turns (llm/fair.py), with real threads: tenants waiting take turns round-robin, each
tenant's requests in order, a waiter whose caller went away leaves the queue. Order of events only, no timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from backend.llm.fair import FairScheduler


def _until(check: Callable[[], bool], deadline_s: float = 30) -> None:
    """Wait for a state (bounded; not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "the state was never reached"
        time.sleep(0.005)


class _Runs:
    """Threads that each wait for a turn, record that they got it, and give it back."""

    def __init__(self, scheduler: FairScheduler) -> None:
        self.scheduler = scheduler
        self.order: list[str] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def queue(self, name: str, tenant: str, cancelled: threading.Event | None = None) -> None:
        """Start a waiter and return once it is queued (so the queue's order is the order of these calls)."""
        before = sum(self.scheduler.waiting().values())

        def run() -> None:
            with self.scheduler.turn(tenant, cancelled) as granted:
                if granted:
                    with self._lock:
                        self.order.append(name)

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        _until(lambda: sum(self.scheduler.waiting().values()) == before + 1)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()


def test_a_tenants_backlog_does_not_make_another_tenants_first_answer_wait_behind_it():
    scheduler = FairScheduler()
    runs = _Runs(scheduler)
    assert scheduler.acquire("sales")  # sales' answer is being generated
    for i in range(30):
        runs.queue(f"sales{i}", "sales")  # and 30 more of sales' wait
    runs.queue("finance0", "finance")
    runs.queue("finance1", "finance")
    runs.queue("engineering0", "engineering")
    scheduler.release()
    runs.join()
    # finance and engineering had not been served: each goes before sales' next; then turns alternate.
    assert runs.order[:6] == ["finance0", "engineering0", "sales0", "finance1", "sales1", "sales2"]
    assert runs.order[6:] == [f"sales{i}" for i in range(3, 30)]  # sales' own requests stay in order
    assert scheduler.waiting() == {}


def test_waiting_tenants_alternate_round_robin():
    scheduler = FairScheduler()
    runs = _Runs(scheduler)
    assert scheduler.acquire("other")
    for i in range(3):
        runs.queue(f"a{i}", "a")
    for i in range(3):
        runs.queue(f"b{i}", "b")
    runs.queue("c0", "c")
    scheduler.release()
    runs.join()
    assert runs.order == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]


def test_a_waiter_whose_caller_went_away_leaves_the_queue_without_running():
    scheduler = FairScheduler()
    runs = _Runs(scheduler)
    assert scheduler.acquire("sales")
    gone = threading.Event()
    runs.queue("sales-gone", "sales", cancelled=gone)
    runs.queue("finance0", "finance")
    gone.set()
    _until(lambda: scheduler.waiting() == {"finance": 1})
    scheduler.release()
    runs.join()
    assert runs.order == ["finance0"]
    assert scheduler.acquire("sales")  # free again: nothing was left held
    scheduler.release()


def test_a_free_model_is_taken_at_once_and_a_failure_inside_gives_it_back():
    scheduler = FairScheduler()
    with pytest.raises(RuntimeError), scheduler.turn("sales") as granted:
        assert granted
        raise RuntimeError("llama.cpp failed")
    with scheduler.turn("finance") as granted:  # would block forever if the failure had kept the turn
        assert granted
