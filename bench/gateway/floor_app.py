"""The floor: a bare FastAPI endpoint returning a fixed chat completion (no LiteLLM, no auth)."""

from fastapi import FastAPI, Request

app = FastAPI()
ANSWER = {"id": "chatcmpl-floor", "object": "chat.completion", "created": 0, "model": "smart",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "This is a mock answer."},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}


@app.post("/v1/chat/completions")
async def completions(request: Request) -> dict:
    await request.json()
    return ANSWER
