"""An API key is not a way out of its owner's allowance: through the OpenAI-compatible route (the official openai SDK),
a key's calls, and those of a key made with it, count against the person at the root of the chain; a key with no
person (made by the CLI) has an allowance of its own. /api/me/usage through a key shows its owner's numbers. A call
without max_tokens cannot outgrow what it reserved."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from backend.auth.api_keys import issue_key
from backend.chat.compose import estimate_tokens
from tests.llm.fakes import FakeOpenAI, make_config_dir, set_tenant

MAX_TOKENS = 30
USED = 18  # what FakeOpenAI reports for every answer (11 + 7)
OPEN = {"requests_per_minute": None, "user_requests_per_minute": None, "tokens_per_day": None,
        "monthly_budget_usd": None}


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Question number {i:03d} about the notice period?"}]  # no cached answer


EST = estimate_tokens(messages(0)) + MAX_TOKENS  # what each call reserves


@pytest.fixture
def app(tmp_path, make_api_client):
    with FakeOpenAI(text="thirty days") as server:
        cfg = make_config_dir(tmp_path, model_list=[
            {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                      "api_base": server.url}}],
            fallbacks=[], policy={"allowed_tiers": ["fast"]}, quotas=OPEN)
        # Room for one answer plus one token short of a second reservation: the second call is the edge.
        set_tenant(cfg, "sales", quotas={"member": {"tokens_per_day": USED + EST - 1}})
        client = make_api_client(ATRIUM_CONFIG_DIR=str(cfg))
        client.provider = server  # what reached the model
        yield client


def sdk(api, token: str) -> OpenAI:
    return OpenAI(base_url="http://testserver/api/t/sales/v1", api_key=token, http_client=api, max_retries=0,
                  default_headers={"X-Tenant-ID": "sales"})


def ask(client: OpenAI, i: int) -> str:
    reply = client.chat.completions.create(model="fast", messages=messages(i), max_tokens=MAX_TOKENS)
    return reply.choices[0].message.content or ""


def test_a_key_and_a_key_made_with_it_count_against_their_owner(app):
    db = app.app.state.services.db
    alice = issue_key(db=db, tenant="sales", scopes=["chat", "admin"], created_by="alice")
    child = issue_key(db=db, tenant="sales", scopes=["chat"], created_by=f"key:{alice.key.id}",
                      parent_key_id=alice.key.id)
    cli = issue_key(db=db, tenant="sales", scopes=["chat"], created_by="cli")  # no person behind it
    assert "thirty days" in ask(sdk(app, alice.token), 1)
    # The child key is alice's too: her allowance is spent, whichever of her keys asks.
    with pytest.raises(openai.RateLimitError) as refused:
        ask(sdk(app, child.token), 2)
    assert refused.value.body["code"] == "member_tokens_per_day"
    assert "your allowance of" in refused.value.body["message"]
    with pytest.raises(openai.RateLimitError):
        ask(sdk(app, alice.token), 3)
    # A key without a person has its own allowance (the default `quotas.member`): it is served.
    assert "thirty days" in ask(sdk(app, cli.token), 4)
    # Through a key, /api/me/usage shows the allowance its calls count against: alice's.
    mine = app.get("/api/me/usage", headers={"Authorization": f"Bearer {child.token}", "X-Tenant-ID": "sales"})
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["member"] == "alice" and body["tenants"]["sales"]["today"]["tokens"] == USED
    # Nor can her admin key raise her allowance; another admin's raise applies to every one of her keys at once.
    def raise_alice(token: str):
        return app.post("/api/t/sales/usage/allowances", json={"subject": "alice", "tokens_per_day": 10_000},
                        headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": "sales"})

    assert raise_alice(alice.token).status_code == 403
    raised = raise_alice(issue_key(db=db, tenant="sales", scopes=["admin"]).token)
    assert raised.status_code == 200, raised.text
    assert "thirty days" in ask(sdk(app, child.token), 5)
    # The tenant admin's report by user: alice's allowance counts her keys' calls.
    report = app.get("/api/t/sales/usage?group_by=user",
                     headers={"Authorization": f"Bearer {alice.token}", "X-Tenant-ID": "sales"}).json()
    group = next(g for g in report["groups"] if g["key"] == f"key:{alice.key.id}")
    assert group["member"] == "alice" and group["allowance"]["today"]["tokens"] == 2 * USED  # hers and her child key's


def test_a_call_without_max_tokens_is_capped_at_what_it_reserved(app):
    """The attack: leave max_tokens out, so the call reserves a default but the model may write its own maximum
    (one call overshooting the allowance many times over). Under a member's allowance the reservation is the cap."""
    db = app.app.state.services.db
    key = issue_key(db=db, tenant="sales", scopes=["chat"], created_by="dave")
    admin = issue_key(db=db, tenant="sales", scopes=["admin"])
    assert app.post("/api/t/sales/usage/allowances", json={"subject": "dave", "tokens_per_day": 10_000},
                    headers={"Authorization": f"Bearer {admin.token}", "X-Tenant-ID": "sales"}).status_code == 200
    client = sdk(app, key.token)
    client.chat.completions.create(model="fast", messages=messages(9))
    assert app.provider.requests[-1]["max_tokens"] == 512  # RESERVED_OUTPUT: what the admission reserved
    client.chat.completions.create(model="fast", messages=messages(10), max_tokens=5)
    assert app.provider.requests[-1]["max_tokens"] == 5  # the caller's own (lower) cap stands


@pytest.fixture
def overrides(tmp_path, make_api_client):
    """Sales: a default allowance too small for one call; admins and the editors' claim group have room."""
    with FakeOpenAI(text="thirty days") as server:
        cfg = make_config_dir(tmp_path, model_list=[
            {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                      "api_base": server.url}}],
            fallbacks=[], policy={"allowed_tiers": ["fast"]}, quotas=OPEN)
        set_tenant(cfg, "sales", quotas={"member": {"tokens_per_day": EST - 1}, "member_overrides": [
            {"name": "admins", "role": "tenant_admin", "tokens_per_day": 10_000},
            {"name": "editors", "any_of": ["sales-editors"], "tokens_per_day": 10_000}]})
        yield make_api_client(ATRIUM_CONFIG_DIR=str(cfg))


def signed_in(db, subject: str, groups: list[str]) -> None:
    """`subject` signed in to the chat with these groups (what the key review and the allowance read)."""
    from backend.db.repositories.conversations import upsert_chat_user

    with db.session() as s:
        upsert_chat_user(session=s, identifier=subject, display_name=subject, provider="oidc",
                         claims={"sub": subject, "preferred_username": subject, "groups": groups})


def test_a_keys_allowance_is_its_owners_not_one_its_scopes_choose(overrides):
    """The fix: a key's allowance was chosen by its scopes (an `admin` key is a tenant_admin, in no claim group):
    a plain member's admin key got the admins' allowance, an admin's or an editor's chat key the default. Now
    the owner's roles and claim groups, as their claims map now, choose it."""
    app = overrides
    db = app.app.state.services.db
    signed_in(db, "alice", ["sales"])
    signed_in(db, "carol", ["sales", "sales-admins"])
    signed_in(db, "bob", ["sales", "sales-editors"])
    alice = issue_key(db=db, tenant="sales", scopes=["chat", "admin"], created_by="alice")
    carol = issue_key(db=db, tenant="sales", scopes=["chat"], created_by="carol")
    bob = issue_key(db=db, tenant="sales", scopes=["chat"], created_by="bob")
    cli = issue_key(db=db, tenant="sales", scopes=["chat", "admin"], created_by="cli")
    stranger = issue_key(db=db, tenant="sales", scopes=["chat", "admin"], created_by="maria")  # never signed in

    def source(token: str) -> str:
        r = app.get("/api/me/usage", headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": "sales"})
        assert r.status_code == 200, r.text
        return r.json()["tenants"]["sales"]["allowance"]["source"]

    assert "thirty days" in ask(sdk(app, carol.token), 20)  # the admins' allowance, though the key is chat-only
    assert "thirty days" in ask(sdk(app, bob.token), 21)  # the editors' claim group
    assert (source(carol.token), source(bob.token)) == ("admins", "editors")
    for token in (alice.token, cli.token, stranger.token):  # the admin scope chooses nothing: the default
        with pytest.raises(openai.RateLimitError) as refused:
            ask(sdk(app, token), 22)
        assert refused.value.body["code"] == "member_tokens_per_day"
        assert source(token) == "default"
    # The owner's claims as they map now: alice becomes an admin at the IdP and signs in again. A verified key is
    # remembered for ATRIUM_API_KEY_CACHE_SECONDS (5 s) with its owner's basis, as with a revocation elsewhere:
    # here it is forgotten, as it is after that time.
    signed_in(db, "alice", ["sales", "sales-admins"])
    keys = app.app.state.services.api_keys
    keys.forget(alice.key.id, carol.key.id)
    assert "thirty days" in ask(sdk(app, alice.token), 23)
    # And carol leaves the admins: her key is back to the default.
    signed_in(db, "carol", ["sales"])
    with pytest.raises(openai.RateLimitError):
        ask(sdk(app, carol.token), 24)
