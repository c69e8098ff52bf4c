"""LiteLLM's own cost: a FastAPI endpoint that only calls Router.acompletion (mock_response deployment)."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fastapi import FastAPI, Request  # noqa: E402
from litellm import Router  # noqa: E402

app = FastAPI()
router = Router(model_list=[{"model_name": "smart", "litellm_params": {
    "model": "anthropic/claude-sonnet-4-5", "api_key": "sk-bench", "mock_response": "This is a mock answer."}}])


@app.post("/v1/chat/completions")
async def completions(request: Request) -> dict:
    body = await request.json()
    response = await router.acompletion(model=body["model"], messages=body["messages"])
    return response.model_dump()
