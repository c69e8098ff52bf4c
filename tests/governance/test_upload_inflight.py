"""tenants.yaml `limits.uploads` (governance/inflight.py): a tenant's uploads in progress at once in one process.
The counting, then POST /documents and a file attached in the chat while the tenant's slots are all taken (held by
the test, as uploads in progress would hold them): a 429 naming the setting, nothing stored; other tenants and the
same tenant once a slot is free are served."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.auth.principal import MEMBER, TENANT_ADMIN, Principal
from backend.errors import QuotaExceeded
from backend.governance.inflight import InflightLimits
from backend.knowledge.service import AttachedFile
from backend.tenants import TenantLimits
from tests.conftest import REPO

PRICING = REPO / "demo" / "corpus" / "sales" / "pricing-rules.md"


def test_uploads_have_a_cap_of_their_own():
    caps = InflightLimits(limits=lambda t: TenantLimits(uploads=2) if t == "finance" else TenantLimits(),
                          name_of=lambda t: t.title())
    held = [caps.upload("finance"), caps.upload("finance")]
    with pytest.raises(QuotaExceeded) as refused:
        caps.upload("finance")
    assert refused.value.limit == "uploads" and refused.value.status_code == 429
    assert refused.value.headers["Retry-After"] == str(caps.retry_after_s)
    assert refused.value.message.startswith(
        "Finance already has 2 uploads in progress (tenants.yaml limits.uploads: 2): try again in a few seconds, "
        "when one has finished, or send several files in one request")
    assert caps.held("finance", ("uploads",)) == {"uploads": 2}  # the refused one took nothing
    assert caps.held("finance") == {"model_calls": 0, "streams": 0}  # uploads are not model calls
    with caps.acquire("finance", stream=True):  # nor do they hold the tenant's chat back
        pass
    assert [caps.upload("sales") for _ in range(20)]  # no cap: never refused
    held[0].release()
    with caps.upload("finance"):
        assert caps.held("finance", ("uploads",)) == {"uploads": 2}


def test_the_default_is_four_uploads():
    assert TenantLimits.model_fields["uploads"].default is None  # unset: taken from defaults.limits
    from backend.tenants import TenantDefaults

    assert TenantDefaults().limits.uploads == 4


def test_an_upload_over_the_cap_is_a_429_naming_the_setting_and_stores_nothing(api_client, api_services, login_as):
    carol = {"cookies": login_as("carol")}  # sales tenant admin
    inflight = api_services.inflight
    cap = api_services.registry.limits("sales").uploads
    assert cap == 4  # config/tenants.yaml defaults.limits
    files = {"files": ("pricing-rules.md", PRICING.read_bytes(), "text/markdown")}
    held = [inflight.upload("sales") for _ in range(cap)]  # uploads in progress
    try:
        r = api_client.post("/api/t/sales/documents", files=files, **carol)
        assert r.status_code == 429, r.text
        body = r.json()
        assert (body["error"], body["limit"], r.headers["Retry-After"]) == ("quota_exceeded", "uploads", "2")
        assert "already has 4 uploads in progress (tenants.yaml limits.uploads: 4)" in body["detail"]
        assert api_client.get("/api/t/sales/documents", **carol).json()["documents"] == []
        assert inflight.held("sales", ("uploads",)) == {"uploads": cap}  # the refusal took no slot
        fiona = {"cookies": login_as("fiona")}  # finance tenant admin: her tenant's cap is untouched
        r = api_client.post("/api/t/finance/documents", files=files, **fiona)
        assert r.status_code == 202, r.text
    finally:
        held.pop().release()
    r = api_client.post("/api/t/sales/documents", files=files, **carol)
    assert r.status_code == 202, r.text
    assert inflight.held("sales", ("uploads",)) == {"uploads": cap - 1}  # given back after the upload
    for slot in held:
        slot.release()


def test_a_file_attached_in_the_chat_over_the_cap_is_refused(api_services, tmp_path: Path):
    knowledge = api_services.knowledge
    carol = Principal(subject="carol", name="Carol", tenants={"sales": frozenset({MEMBER, TENANT_ADMIN})})
    attached = tmp_path / "pricing-rules.md"
    attached.write_bytes(PRICING.read_bytes())
    held = [knowledge.inflight.upload("sales") for _ in range(4)]
    try:
        with pytest.raises(QuotaExceeded) as refused:
            knowledge.upload_attachments(carol, "sales", [AttachedFile(filename=attached.name, path=attached)])
        assert refused.value.limit == "uploads" and "limits.uploads: 4" in refused.value.message
    finally:
        for slot in held:
            slot.release()
    result = knowledge.upload_attachments(carol, "sales", [AttachedFile(filename=attached.name, path=attached)])
    assert [d["filename"] for d in result["documents"]] == ["pricing-rules.md"]
    assert knowledge.inflight.held("sales", ("uploads",)) == {"uploads": 0}
