"""The OpenAPI document tells the truth: a bounded schemathesis run (`--checks all`, a fixed seed) against a
served app finds no failure. Every status an operation answers is documented with its body, what the schema
allows the server takes, what the server refuses the schema refuses, and nothing is a 5xx.

Two passes: a tenant API key with every scope (X-Tenant-ID header) over every operation but the platform
admin's, then a platform admin's browser session over those and /api/me. The models are LiteLLM mock responses
(paid APIs are never called, and the local model would take minutes per hundred calls); Dify's chat is a local
server speaking its protocol (tests/api/test_dify_chat.py). Operation settings below say why they differ.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.auth.api_keys import SCOPES, issue_key
from backend.db.engine import Database, make_engine
from tests.api.test_dify_chat import APP_KEYS, FakeDify
from tests.conftest import REPO, start_server, stop_server
from tests.llm.fakes import make_config_dir, mock

pytestmark = pytest.mark.slow

SEED = 20260514
EXAMPLES = 75  # per operation and phase: the whole test takes about two minutes on two cores
ACCEPTED = ["2xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default for valid data
CONFIG = f"""
seed = {SEED}
request-timeout = 60
generation.database = "none"

# The tenant the key belongs to (another is a 403, covered by tests/api/test_isolation.py), and an assistant it has,
# so the prompt routes are exercised past their 404.
[parameters]
tenant = "sales"
assistant = "sales-assistant"

# /usage: `from` and `to` at most 366 days apart (and in order) is a rule across two parameters, which JSON Schema
# cannot state (their descriptions do); a valid pair outside it is a 422 `invalid_range`.
[[operations]]
include-path = "/api/t/{{tenant}}/usage"
checks.positive_data_acceptance.expected-statuses = {json.dumps([*ACCEPTED, "422"])}

# A prompt version is a template with front matter, validated as a whole (required fields, the tenant's tiers,
# the variables it uses, a message for the history), and a label that does not exist yet needs `create: true`:
# rules across fields that JSON Schema cannot state. A valid body that breaks them is a 422 naming each problem.
[[operations]]
include-name = ["POST /api/t/{{tenant}}/prompts/{{assistant}}/versions",
                "POST /api/t/{{tenant}}/prompts/{{assistant}}/try",
                "PUT /api/t/{{tenant}}/prompts/{{assistant}}/labels/{{label}}"]
checks.positive_data_acceptance.expected-statuses = {json.dumps([*ACCEPTED, "422"])}

# Evaluations: a run takes a saved version or a draft (exactly one), a draft is validated as a whole like a save, its
# tier must be one the tenant allows and its judge live, and the set must have a case to run; an imported file is
# YAML whose every case must be valid. Rules across fields or inside a string: a valid body breaking them is a 422.
[[operations]]
include-name = ["POST /api/t/{{tenant}}/evals/{{assistant}}/runs",
                "POST /api/t/{{tenant}}/evals/{{assistant}}/cases/import"]
checks.positive_data_acceptance.expected-statuses = {json.dumps([*ACCEPTED, "422"])}

# An upload's bytes are checked for what they are (empty, binary, too large, not what the name says): JSON
# Schema's `string` of octets cannot say that. And multipart cannot carry JSON null: the "null" schemathesis sends
# for a field it made null is a 4-byte text file (or title), which the server rightly takes, so negative cases
# of this body are not generated. tests/api/test_documents.py and test_upload_types.py cover the refusals.
[[operations]]
include-name = "POST /api/t/{{tenant}}/documents"
generation.mode = "positive"
checks.positive_data_acceptance.expected-statuses = {json.dumps([*ACCEPTED, "413", "415", "422"])}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schemathesis")
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "A fast answer."),
                                           mock("smart", "anthropic/claude-sonnet-5-5", "A smart answer.")],
                          quotas={"requests_per_minute": 100_000, "user_requests_per_minute": 100_000,
                                  "tokens_per_day": None, "monthly_budget_usd": None})
    shutil.copytree(REPO / "prompts", tmp / "prompts")  # the run saves versions and moves labels
    dify = FakeDify()
    server = start_server(tmp, {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_PROMPTS_DIR": str(tmp / "prompts"),
                                "ATRIUM_INGEST_WORKER": "false", "DIFY_BASE_URL": dify.url, **APP_KEYS})
    db = Database(make_engine(f"sqlite:///{server.data_dir / 'atrium.db'}"))
    key = issue_key(db=db, tenant="sales", scopes=sorted(SCOPES), name="schemathesis").token
    db.engine.dispose()
    # The first search loads the embedding model: not a request's time to count.
    r = httpx.post(f"{server.url}/api/t/sales/search", json={"query": "warm up"},
                   headers={"Authorization": f"Bearer {key}"}, timeout=180)
    assert r.status_code == 200, r.text
    yield server, key
    stop_server(server)
    dify.close()


def _run(server, tmp: Path, name: str, headers: dict[str, str], *select: str) -> tuple[str, float]:
    (tmp / "schemathesis.toml").write_text(CONFIG)
    args = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp / "schemathesis.toml"), "run",
            f"{server.url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES), "--workers", "1",
            "--no-color", *select]
    for header, value in headers.items():
        args += ["-H", f"{header}: {value}"]
    started = time.monotonic()
    done = subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - started
    out = done.stdout + done.stderr
    (tmp / f"{name}.txt").write_text(out)
    failures = out[out.find("=== FAILURES"):] if "=== FAILURES" in out else out[-6000:]
    assert done.returncode == 0, f"schemathesis ({name}) found problems:\n{failures[:20000]}"
    return out, took


def _summary(out: str) -> str:
    tested = re.search(r"Tested: (\d+)", out)
    cases = re.search(r"(\d+) generated", out)
    return f"{tested.group(1) if tested else '?'} operations, {cases.group(1) if cases else '?'} test cases"


def test_the_openapi_document_tells_the_truth(served, tmp_path):
    server, key = served
    out, took = _run(server, tmp_path, "api-key", {"Authorization": f"Bearer {key}", "X-Tenant-ID": "sales"},
                     "--exclude-path-regex", "^/api/admin/")
    print(f"\nschemathesis, tenant API key: {_summary(out)} in {took:.0f} s")
    cookies = server.login("root")  # a platform admin, in no tenant
    out, took = _run(server, tmp_path, "platform-admin", {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
                     "--include-path-regex", "^/api/(admin/|me$)")
    print(f"schemathesis, platform admin session: {_summary(out)} in {took:.0f} s")
