"""LiteLLM's own cost: a FastAPI endpoint that only calls Router.acompletion (mock_response deployment).

BENCH_QUIET_LITELLM=1 applies Atrium's process settings first (backend.llm.litellm_quiet.quiet_litellm: no per-call
pricing or success logging while no LiteLLM callback reads them; backend.runtime.tune_gc: start-up objects
frozen, fewer young collections), so the run shows Atrium's own overhead over the same Router work, next to
the default Router the issue compares with."""

import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fastapi import FastAPI, Request  # noqa: E402
from litellm import Router  # noqa: E402

if os.environ.get("BENCH_QUIET_LITELLM") == "1":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from backend.llm.litellm_quiet import quiet_litellm
    from backend.runtime import tune_gc

    quiet_litellm()

app = FastAPI()
router = Router(model_list=[{"model_name": "smart", "litellm_params": {
    "model": "anthropic/claude-sonnet-5-5", "api_key": "sk-bench", "mock_response": "This is a mock answer."}}])


if os.environ.get("BENCH_QUIET_LITELLM") == "1":
    tune_gc()  # after the Router exists, as Atrium does once start-up is done


@app.post("/v1/chat/completions")
async def completions(request: Request) -> dict:
    body = await request.json()
    response = await router.acompletion(model=body["model"], messages=body["messages"])
    return response.model_dump()
