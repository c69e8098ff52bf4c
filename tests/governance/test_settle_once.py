"""A turn is charged once, whoever charges it: a replica cut off from PostgreSQL but not from Redis stops beating
its lease, so a survivor reaps its streaming turn and charges what the row says it had used (charge_sync), while the
replica goes on, finishes the answer and settles its reservation with the real figures. Both may happen, in either
order: the counters hold what the turn really used, not the sum (quotas.py `settle`, ratelimit.py `charge_once`).
On both backends (Redis: the real one), then through the chat pipeline and the reaper's own rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.models import ChatTurn
from backend.db.repositories.turns import reap_turns
from backend.governance.quotas import QuotaService
from backend.tenants import TenantRegistry
from tests.chat.test_pipeline_stages import alice, rows
from tests.llm.fakes import make_config_dir, mock, set_tenant

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    return Database(make_engine(url))


def replicas(tmp_path, db, make_limits) -> tuple[QuotaService, QuotaService]:
    """The replica answering the turn, and the survivor that reaps it: two services, one set of counters."""
    factory, prefix = make_limits
    cfg = make_config_dir(tmp_path, model_list=[], quotas={"requests_per_minute": None,
                                                          "user_requests_per_minute": None, "tokens_per_day": 10_000,
                                                          "monthly_budget_usd": 100.0})
    set_tenant(cfg, "sales", quotas={"member": {"tokens_per_day": 5_000, "monthly_budget_usd": 50.0}})
    registry = TenantRegistry.load(cfg / "tenants.yaml")
    return tuple(QuotaService(backend=factory(), registry=registry, db=db, prefix=prefix)  # type: ignore[return-value]
                 for _ in range(2))


def counters(svc: QuotaService) -> dict[str, int | None]:
    member_tokens, member_usd = svc.member_keys("sales", "alice", now=NOW)
    keys = {"tokens": svc._key("sales", "tokens", "20261124"), "usd": svc._key("sales", "usd", "202611"),
            "member_tokens": member_tokens, "member_usd": member_usd}
    return {name: asyncio.run(svc.backend.get(key)) for name, key in keys.items()}


def admitted(svc: QuotaService, turn: str):
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=900, est_cost_usd=0.5, now=NOW))
    adm.turn = turn  # as the pipeline sets it once the turn's row exists (chat/generate.py)
    return adm


@pytest.mark.parametrize("reaper_first", [True, False], ids=["reaped-then-settled", "settled-then-reaped"])
def test_a_turn_reaped_and_settled_is_charged_once(tmp_path, db, make_limits, reaper_first):
    replica, survivor = replicas(tmp_path, db, make_limits)
    adm = admitted(replica, "turn-1")
    # What the row said when the replica lost the database: 120 tokens, $0.05 so far; the answer then ran to 300
    # tokens, $0.20.
    reaped = dict(tenant="sales", at=NOW, tokens=120, cost_usd=0.05, subject="alice", turn="turn-1")
    if reaper_first:
        survivor.charge_sync(**reaped)
        assert counters(replica) == {"tokens": 120, "usd": 50_000, "member_tokens": 120, "member_usd": 50_000}
        asyncio.run(replica.settle(adm, tokens=300, cost_usd=0.2))
    else:
        asyncio.run(replica.settle(adm, tokens=300, cost_usd=0.2))
        survivor.charge_sync(**reaped)
    assert counters(replica) == {"tokens": 300, "usd": 200_000, "member_tokens": 300, "member_usd": 200_000}
    assert asyncio.run(replica.reserved("sales", now=NOW)) == {"tokens": 0, "micro_usd": 0}  # the hold is gone
    survivor.charge_sync(**reaped)  # a second survivor reaping it again changes nothing either
    assert counters(survivor)["tokens"] == 300


def test_other_turns_and_turns_without_a_key_still_count(tmp_path, db, make_limits):
    """The guard is per turn: another turn's charge counts in full; a charge without a turn key (a row from before
    the key existed) counts as it always did."""
    replica, survivor = replicas(tmp_path, db, make_limits)
    asyncio.run(replica.settle(admitted(replica, "turn-1"), tokens=300, cost_usd=0.2))
    asyncio.run(replica.settle(admitted(replica, "turn-2"), tokens=100, cost_usd=0.1))
    survivor.charge_sync(tenant="sales", at=NOW, tokens=40, cost_usd=0.0, subject="alice")
    assert counters(replica)["tokens"] == 440 and counters(replica)["member_tokens"] == 440
    assert counters(replica)["usd"] == 300_000


def test_the_pipeline_marks_its_turn_and_the_reapers_charge_of_it_adds_nothing(model_services, backend_kind,
                                                                                request):
    """A turn answered through ChatService (its reservation settled with the turn's key), then charged again as a
    survivor would charge it from the reaped row (reap_turns hands back the turn_key): counted once."""
    env = {"ATRIUM_LEASE_S": "3600"}  # this process's own reaping runs at its start only: the test reaps
    if backend_kind == "redis":
        env.update(REDIS_URL=request.getfixturevalue("redis_url"),
                   ATRIUM_REDIS_PREFIX=request.getfixturevalue("redis_prefix"))
    svc = model_services(model_list=[mock("smart", "anthropic/claude-sonnet-5-5", "an answer")],
                         quotas={"requests_per_minute": None, "user_requests_per_minute": None,
                                 "tokens_per_day": 100_000, "monthly_budget_usd": None}, **env)
    from backend.chat.types import ChatRequest

    asyncio.run(svc.chat.run(alice(svc), ChatRequest(tenant="sales", assistant="sales-assistant",
                                                     message="hello there", tier="smart")))
    [row] = rows(svc)
    used = row.prompt_tokens + row.completion_tokens
    key = svc.quotas._key("sales", "tokens", datetime.now(UTC).strftime("%Y%m%d"))
    assert row.turn_key and used > 0 and asyncio.run(svc.quotas.backend.get(key)) == used
    # The reaper's rows carry the turn's key (the row is set back to streaming, as a cut-off replica left it).
    with svc.db.session() as session:
        turn = session.get(ChatTurn, row.id)
        turn.status, turn.owner = "streaming", "a-replica-that-stopped-beating"
        session.add(turn)
        session.commit()
        [reaped] = reap_turns(session=session, lease_s=60, exclude_owner=None, reason="test")
    assert reaped["turn_key"] == row.turn_key
    svc.quotas.charge_sync(tenant=reaped["tenant"], at=reaped["created_at"],
                           tokens=reaped["prompt_tokens"] + reaped["completion_tokens"],
                           cost_usd=float(reaped["cost_usd"] or 0.0), subject=reaped["subject"],
                           assistant=reaped["assistant"], turn=reaped["turn_key"])
    assert asyncio.run(svc.quotas.backend.get(key)) == used
