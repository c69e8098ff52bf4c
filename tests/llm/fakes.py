"""Test doubles for paid model APIs: a local HTTP server speaking OpenAI's chat-completions protocol,
and helpers writing a models.yaml / tenants.yaml for a test config dir (LiteLLM `mock_response`)."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


class _Served:
    """A local HTTP server on a free port, started and stopped as a context manager."""

    server: ThreadingHTTPServer
    url: str

    def _serve(self, handler: type[BaseHTTPRequestHandler], path: str = "") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeOpenAI(_Served):
    """POST /v1/chat/completions: status `status` (500) when `fail`, else a completion (SSE when `stream`) whose text
    names the model asked for, cut at `max_tokens` words with finish_reason "length" as OpenAI does. `reply`:
    the (text, finish_reason) to answer a request body with instead, sent as it is (a model scripted to stop at
    its length limit). Every request body is kept in `.requests`. `gate`: every answer waits until it is set (the
    requests admitted are then all in progress at once); `.requests` has each request as soon as it arrives.
    `usage`: the usage to report for a request body (a model that writes more than it is told to), instead of 11
    prompt and 7 completion tokens."""

    def __init__(self, *, fail: bool = False, text: str = "fake answer", status: int = 500,
                 error: str = "upstream exploded",
                 reply: Callable[[dict[str, Any]], tuple[str, str]] | None = None,
                 gate: threading.Event | None = None,
                 usage: Callable[[dict[str, Any]], dict[str, int]] | None = None) -> None:
        self.fail = fail
        self.gate = gate
        self.reply = reply
        self.usage = usage
        self.status = status  # of a failure: 500 (the provider is down) or 400 (it rejects the request)
        self.error = error
        self.text = text
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                outer.requests.append(body)
                if outer.gate is not None:
                    outer.gate.wait(120)
                if outer.fail:
                    kind = "invalid_request_error" if outer.status == 400 else "server_error"
                    payload = json.dumps({"error": {"message": outer.error, "type": kind}})
                    self.send_response(outer.status)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(payload.encode())
                    return
                model = body.get("model", "?")
                text = f"{outer.text} from {model}"
                limit = body.get("max_tokens") or body.get("max_completion_tokens")
                finish = "stop"
                if outer.reply is not None:
                    text, finish = outer.reply(body)
                elif limit and len(text.split(" ")) > int(limit):
                    text, finish = " ".join(text.split(" ")[:int(limit)]), "length"
                usage = ({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18} if outer.usage is None
                         else outer.usage(body))
                if not body.get("stream"):
                    data = {"id": "cmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": finish}], "usage": usage}
                    raw = json.dumps(data).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                base = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
                words = re.findall(r"\s*\S+", text) if outer.reply is not None else [w + " " for w in text.split(" ")]
                for word in words:
                    chunk = {**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
                self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self._serve(Handler, "/v1")


class FakeAnthropic(_Served):
    """POST /v1/messages as Anthropic's Messages API answers a model that thinks before it writes (Claude 5.x):
    a `thinking` block (`thinking` text, then a signature), then the `text` block, JSON or SSE events; usage's
    `output_tokens` includes the thinking tokens. `think_only`: the whole max_tokens goes on thinking (no text
    block, stop_reason "max_tokens"). `status`/`error`: a failure in Anthropic's error shape. Every request
    body is kept in `.requests`. Point a deployment's `api_base` at `.url` (LiteLLM appends /v1/messages)."""

    THINKING = "secret chain of thought"

    def __init__(self, *, text: str = "fake answer", think_only: bool = False, status: int | None = None,
                 error: str = "invalid request", thinking_tokens: int = 30) -> None:
        self.text, self.think_only, self.status, self.error = text, think_only, status, error
        self.thinking_tokens = thinking_tokens
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, status: int, ctype: str, raw: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                outer.requests.append(body)
                if outer.status is not None:
                    kind = "invalid_request_error" if outer.status == 400 else "api_error"
                    error = {"type": "error", "error": {"type": kind, "message": outer.error}}
                    self._send(outer.status, "application/json", json.dumps(error).encode())
                    return
                model = body.get("model", "?")
                text = "" if outer.think_only else f"{outer.text} from {model}"
                thinking = outer.thinking_tokens if not outer.think_only else int(body.get("max_tokens") or 0)
                usage = {"input_tokens": 40, "output_tokens": thinking + (len(text.split()) if text else 0),
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                         "output_tokens_details": {"thinking_tokens": thinking}}
                stop = "max_tokens" if outer.think_only else "end_turn"
                blocks: list[dict[str, Any]] = [{"type": "thinking", "thinking": outer.THINKING, "signature": "sig"}]
                if text:
                    blocks.append({"type": "text", "text": text})
                if not body.get("stream"):
                    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                               "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage}
                    self._send(200, "application/json", json.dumps(message).encode())
                    return
                start = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
                         "stop_reason": None, "stop_sequence": None,
                         "usage": {**usage, "output_tokens": 1, "output_tokens_details": {"thinking_tokens": 0}}}
                events: list[tuple[str, dict[str, Any]]] = [
                    ("message_start", {"type": "message_start", "message": start}),
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "thinking_delta", "thinking": outer.THINKING}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "signature_delta", "signature": "sig"}}),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ]
                if text:
                    events.append(("content_block_start", {"type": "content_block_start", "index": 1,
                                                           "content_block": {"type": "text", "text": ""}}))
                    events.append(("ping", {"type": "ping"}))
                    events += [("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                        "delta": {"type": "text_delta", "text": word + " "}})
                               for word in text.split(" ")]
                    events.append(("content_block_stop", {"type": "content_block_stop", "index": 1}))
                events.append(("message_delta", {"type": "message_delta",
                                                 "delta": {"stop_reason": stop, "stop_sequence": None},
                                                 "usage": {"output_tokens": usage["output_tokens"],
                                                           "output_tokens_details": {"thinking_tokens": thinking}}}))
                events.append(("message_stop", {"type": "message_stop"}))
                raw = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
                self._send(200, "text/event-stream", raw)

        self._serve(Handler)


def mock(tier: str, model: str, text: str, **extra: Any) -> dict[str, Any]:
    """A deployment answered by LiteLLM's mock_response (no network)."""
    return {"model_name": tier, "litellm_params": {"model": model, "api_key": "sk-test", "mock_response": text},
            **extra}


def make_config_dir(root: Path, *, model_list: list[dict], fallbacks: list[dict] | None = None,
                    prices: dict | None = None, num_retries: int = 0, policy: dict | None = None,
                    quotas: dict | None = None, router_settings: dict | None = None,
                    answers: dict | None = None) -> Path:
    """A config dir: the repo's tenants/users with `policy`/`quotas` applied to every tenant, and this model list
    (and `answers:`, how each tier answers knowledge questions, when given)."""
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    for name in ("demo_users.yaml",):
        shutil.copy(REPO / "config" / name, cfg / name)
    tenants = yaml.safe_load((REPO / "config" / "tenants.yaml").read_text())
    for t in tenants["tenants"]:
        _update_policy(t, policy)
        t["quotas"].update(quotas or {})
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(tenants, sort_keys=False))
    models = {"model_list": model_list, "prices": prices or {},
              "router_settings": {"fallbacks": fallbacks if fallbacks is not None else [{"smart": ["fast"]},
                                                                                      {"fast": ["local"]}],
                                  "num_retries": num_retries, "cooldown_time": 0, "timeout": 30,
                                  **(router_settings or {})}}
    if answers is not None:
        models["answers"] = answers
    (cfg / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    return cfg


def sdk_for(api: Any, tenant: str = "sales", scopes: tuple[str, ...] = ("chat",)) -> Any:
    """The official OpenAI SDK on an in-process app (a TestClient), with a new API key of `tenant`."""
    from openai import OpenAI

    from backend.auth.api_keys import issue_key

    key = issue_key(db=api.app.state.services.db, tenant=tenant, scopes=list(scopes)).token
    return OpenAI(base_url=f"http://testserver/api/t/{tenant}/v1", api_key=key, http_client=api, max_retries=0,
                  default_headers={"X-Tenant-ID": tenant})


def set_tenant(cfg: Path, tenant: str, *, policy: dict | None = None, quotas: dict | None = None) -> None:
    data = yaml.safe_load((cfg / "tenants.yaml").read_text())
    for t in data["tenants"]:
        if t["id"] == tenant:
            _update_policy(t, policy)
            t["quotas"].update(quotas or {})
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _update_policy(tenant: dict, policy: dict | None) -> None:
    """`policy` applied. When it narrows allowed_tiers without naming a default tier, a default they leave out (a
    start-up error) becomes the tier the router used instead of it (LLMService.resolve_tier: smart, fast, local)."""
    p = tenant["model_policy"]
    p.update(policy or {})
    if "default_tier" not in (policy or {}) and p["default_tier"] not in p["allowed_tiers"]:
        p["default_tier"] = next((t for t in ("smart", "fast", "local") if t in p["allowed_tiers"]),
                                 p["allowed_tiers"][0] if p["allowed_tiers"] else p["default_tier"])


def iter_lines(path: Path) -> Iterator[dict]:
    for line in path.read_text().splitlines():
        if line.strip():
            yield json.loads(line)


class SlowOpenAI(_Served):
    """OpenAI's chat completions, streamed one word every `delay` s (answers that are still streaming when their
    process is killed); non-streaming calls answer at once."""

    def __init__(self, *, words: int = 400, delay: float = 0.05) -> None:
        outer = self
        self.words, self.delay = words, delay

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                base = {"id": "cmpl-1", "created": int(time.time()), "model": body.get("model", "?")}
                usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                if not body.get("stream"):
                    raw = json.dumps({**base, "object": "chat.completion", "usage": usage, "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "a quick answer"},
                         "finish_reason": "stop"}]}).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                try:
                    for i in range(outer.words):
                        chunk = {**base, "object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(outer.delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    return  # the caller (the killed replica) went away

        self._serve(Handler, "/v1")
