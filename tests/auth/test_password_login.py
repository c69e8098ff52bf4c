"""The demo password sign-in under attack (a review found no limit on attempts, the hashing starving the shared
worker threads, and user names told apart by timing): failures are limited per address and account, hashing runs
on threads of its own, an unknown name costs a hash too, and refusals are audited without flooding."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from sqlmodel import select

import backend.auth.password_login as password_login
from backend.auth.password_login import FAILURES_PER_ACCOUNT, FAILURES_PER_ADDRESS, WINDOW_S, TooManyAttempts
from backend.db.models import AuditEvent
from tests.conftest import DEMO_PASSWORD, start_server, stop_server


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def login(services):
    clock = Clock()
    service = password_login.PasswordLogin(users=lambda: services.demo_users, audit=services.audit, clock=clock)
    yield service, clock, services
    service.close()


def _events(services, reason: str) -> list[AuditEvent]:
    with services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.reason == reason)))


def _try(service, user: str, password: str, ip: str = "10.0.0.1"):
    return asyncio.run(service.authenticate(user, password, ip=ip))


def test_failures_from_one_address_for_one_account_are_limited(login):
    service, clock, services = login
    for _ in range(FAILURES_PER_ACCOUNT):
        assert _try(service, "alice", "wrong") is None
    with pytest.raises(TooManyAttempts) as refused:
        _try(service, "alice", DEMO_PASSWORD)  # even the right password: no guessing goes on
    assert "Too many failed sign-ins" in refused.value.message and 0 < refused.value.retry_after_s <= WINDOW_S
    assert _try(service, "alice", DEMO_PASSWORD, ip="10.0.0.2")["sub"] == "alice"  # another address
    assert _try(service, "bob", DEMO_PASSWORD)["sub"] == "bob"  # another account from this address
    clock.now += WINDOW_S
    assert _try(service, "alice", DEMO_PASSWORD)["sub"] == "alice"
    [limited] = _events(services, "too_many_sign_ins")
    assert (limited.subject, limited.ip, limited.status, limited.detail["username"]) == (None, "10.0.0.1", 429,
                                                                                        "alice")


def test_failures_over_many_names_from_one_address_are_limited(login):
    service, _, services = login
    for i in range(FAILURES_PER_ADDRESS):
        assert _try(service, f"someone-{i}", "guess") is None
    with pytest.raises(TooManyAttempts):
        _try(service, "carol", DEMO_PASSWORD)
    # Made-up names are the address's refusals, grouped: not one row each, and no account is blamed.
    refusals = _events(services, "bad_password")
    assert {e.subject for e in refusals} == {None} and sum(e.count for e in refusals) == FAILURES_PER_ADDRESS
    assert len(refusals) <= 2  # one row per fixed one-minute window: two when the loop crosses a window's edge


def test_a_known_accounts_failures_are_its_own(login):
    service, _, services = login
    assert _try(service, "alice", "wrong") is None
    [refusal] = _events(services, "bad_password")
    assert (refusal.subject, refusal.detail) == ("alice", {"method": "password"})


def test_hashing_runs_on_threads_of_its_own_and_an_unknown_name_costs_a_hash(login, monkeypatch):
    service, _, _ = login
    hashed_on: list[str] = []
    real = password_login.verify_password

    def verify(password: str, encoded: str) -> bool:
        hashed_on.append(threading.current_thread().name)
        return real(password, encoded)

    monkeypatch.setattr(password_login, "verify_password", verify)
    monkeypatch.setattr("backend.auth.demo_users.verify_password", verify)
    assert _try(service, "nobody-here", "x") is None
    assert _try(service, "alice", DEMO_PASSWORD)["sub"] == "alice"
    assert len(hashed_on) == 2 and all(n.startswith("atrium-password") for n in hashed_on)


def test_a_flood_of_wrong_passwords_is_a_429_in_words_on_the_chats_sign_in(tmp_path):
    server = start_server(tmp_path)
    try:
        for _ in range(FAILURES_PER_ACCOUNT):
            r = httpx.post(f"{server.url}/chat/login", data={"username": "erin", "password": "nope"},
                           headers={"Origin": server.url})
            assert r.status_code == 401
        r = httpx.post(f"{server.url}/chat/login", data={"username": "erin", "password": DEMO_PASSWORD},
                       headers={"Origin": server.url})
        assert r.status_code == 429 and "Too many failed sign-ins" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) > 0
        # As the chat's page posts it (multipart form data), and for another account from here: still fine.
        r = httpx.post(f"{server.url}/chat/login", files={"username": (None, "erin"),
                                                          "password": (None, DEMO_PASSWORD)},
                       headers={"Origin": server.url})
        assert r.status_code == 429
        r = httpx.post(f"{server.url}/chat/login", files={"username": (None, "dave"),
                                                          "password": (None, DEMO_PASSWORD)},
                       headers={"Origin": server.url})
        assert r.status_code == 200
    finally:
        stop_server(server)
