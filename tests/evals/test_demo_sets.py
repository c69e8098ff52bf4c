"""The shipped demo sets (evals/<tenant>/<assistant>.yaml) load into every demo assistant, are grounded in the
demo corpus, and mostly pass on the shipped local model (grounded answers: the passages' own statements). The pass
rates measured are in bench/README.md; a set that falls below MIN_PASS_RATE means a case or the corpus changed."""

from __future__ import annotations

import contextlib
import io

from backend.seed import seed_demo
from backend.settings import REPO_ROOT
from tests.evals.conftest import EDITORS, wait_for_run

MIN_PASS_RATE = 0.75


def test_every_demo_assistant_ships_a_set_that_loads_and_mostly_passes(api_client, login_as):
    svc = api_client.app.state.services
    with contextlib.redirect_stdout(io.StringIO()):
        assert seed_demo(svc) == 0
    rates: dict[str, float] = {}
    latency: dict[str, int] = {}  # the median per case, for bench/README.md
    failures: list[str] = []
    for tenant in svc.registry.all():
        cookies = login_as(EDITORS[tenant.id])
        for assistant in tenant.assistants:
            assert (REPO_ROOT / "evals" / tenant.id / f"{assistant.name}.yaml").is_file(), assistant.name
            cases = api_client.get(f"/api/t/{tenant.id}/evals/{assistant.name}/cases", cookies=cookies).json()["cases"]
            assert 8 <= len(cases) <= 15, (assistant.name, len(cases))
            assert sum(c["must_refuse"] for c in cases) >= 2  # another department's question, and an uncovered one
            r = api_client.post(f"/api/t/{tenant.id}/evals/{assistant.name}/runs", cookies=cookies,
                                json={"version": svc.prompts.resolve(tenant.id, assistant.name, "production").version})
            assert r.status_code == 202, r.text
            run = wait_for_run(api_client, tenant.id, assistant.name, r.json()["id"], cookies)
            assert run["status"] == "finished" and run["done"] == run["total"] == len(cases), run
            rates[f"{tenant.id}/{assistant.name}"] = run["score"]
            latency[f"{tenant.id}/{assistant.name}"] = run["latency_ms"]
            failures += [f"{assistant.name}/{x['case_id']}: " + "; ".join(
                f"{k}: {v['detail']}" for k, v in x["checks"].items() if v["ok"] is False)
                for x in run["results"] if not x["passed"]]
    print("demo set pass rates:", rates, "median ms per case:", latency, "\n" + "\n".join(failures))
    assert all(rate >= MIN_PASS_RATE for rate in rates.values()), (rates, failures)
