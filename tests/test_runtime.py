"""The served process freezes its start-up objects and collects the young generation less often, once."""

from __future__ import annotations

import gc

from backend import runtime


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold_once(monkeypatch):
    before = gc.get_threshold()
    monkeypatch.setattr(runtime, "_tuned", False)
    try:
        gc.unfreeze()
        runtime.tune_gc()
        frozen = gc.get_freeze_count()
        assert frozen > 0 and gc.get_threshold()[0] == runtime.GC_GEN0_THRESHOLD
        # A second app in the same process changes nothing: these 1,000 tracked objects stay unfrozen. (The count
        # itself may drop meanwhile: another thread of the test process can free a frozen object.)
        young = [[] for _ in range(1000)]
        runtime.tune_gc()
        assert gc.get_freeze_count() < frozen + len(young)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_app_tunes_gc_when_it_starts(make_api_client, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr("app.tune_gc", lambda: calls.append(1))
    make_api_client()
    assert calls == [1]
