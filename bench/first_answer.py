"""Time from `atrium serve` start to the first streamed chat answer, and later answers.

    .venv/bin/python bench/first_answer.py [--runs 5]

Starts a served app on a free port with a fresh data dir, logs in as alice over HTTP, connects to Chainlit's
socket.io and asks questions. Prints JSON with the measured seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chainlit_client import ChainlitSession  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402

QUESTIONS = [
    "Hello! What can you help me with?",
    "What is the discount a sales rep can approve alone?",
    "Summarise the sales playbook stages.",
    "Who approves discounts above 20%?",
    "What is the list price of the Growth plan?",
]


async def main(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        server = start_server(Path(tmp))
        ready = time.perf_counter() - t0
        try:
            cookies = server.login("alice")
            results = []
            async with ChainlitSession(server.url, cookies, chat_profile="sales/sales-assistant") as chat:
                for q in QUESTIONS[:runs]:
                    start = time.perf_counter()
                    reply = await chat.ask(q)
                    total = time.perf_counter() - start
                    first_token = round(chat.first_token_at - start, 2) if chat.first_token_at else None
                    tokens = len(reply.tokens)
                    results.append({"question": q, "seconds": round(total, 2), "streamed_tokens": tokens,
                                    "first_token_s": first_token})
            return {"server_ready_s": round(ready, 2),
                    "first_answer_s": results[0]["seconds"],
                    "first_answer_from_start_s": round(ready + results[0]["seconds"], 2),
                    "later_answers_s": [r["seconds"] for r in results[1:]],
                    "answers": results}
        finally:
            stop_server(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    print(json.dumps(asyncio.run(main(parser.parse_args().runs)), indent=2))
