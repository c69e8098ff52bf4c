"""A real Chainlit client over socket.io: what the browser does, minus the rendering.

    async with ChainlitSession(url, cookies, chat_profile="sales/sales-assistant") as chat:
        reply = await chat.ask("What is the discount limit?")
        reply.text, reply.tokens, reply.elements
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import socketio


@dataclass
class Reply:
    text: str = ""  # the final content of the assistant messages of this turn
    tokens: list[str] = field(default_factory=list)  # streamed tokens, in order
    messages: list[dict] = field(default_factory=list)  # every message step received
    elements: list[dict] = field(default_factory=list)


class ChainlitSession:
    def __init__(self, base_url: str, cookies: dict[str, str], *, chat_profile: str | None = None,
                 timeout: float = 120, thread_id: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies = cookies
        self.chat_profile = chat_profile
        self.timeout = timeout
        self.sio = socketio.AsyncClient(reconnection=False)
        self.session_id = str(uuid.uuid4())
        self.thread_id = thread_id  # resume this conversation (the sidebar's "open") instead of a new one
        self.events: list[tuple[str, dict]] = []
        self.first_token_at: float | None = None  # perf_counter() of the first token of the last ask()
        self._stop_after: int | None = None  # press Stop after this many tokens of the current ask()
        self._tokens = 0
        self._task_end = asyncio.Event()
        self._started = asyncio.Event()
        for name in ("new_message", "update_message", "stream_start", "stream_token", "element",
                     "task_start", "task_end", "first_interaction", "toast", "resume_thread"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str):
        async def handler(data=None, *args):
            self.events.append((name, data or {}))
            if name == "stream_token":
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self._tokens += 1
                if self._tokens == self._stop_after:
                    await self.sio.emit("stop")  # the Stop button
            if name == "task_end":
                self._task_end.set()
        return handler

    async def __aenter__(self) -> ChainlitSession:
        auth = {"clientType": "webapp", "sessionId": self.session_id, "threadId": self.thread_id, "userEnv": "{}"}
        if self.chat_profile:
            auth["chatProfile"] = quote(self.chat_profile)
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        await self.sio.connect(self.base_url, headers={"Cookie": cookie}, auth=auth,
                               socketio_path="/chat/ws/socket.io", transports=["websocket"],
                               wait_timeout=30)
        await self.sio.emit("connection_successful")
        # on_chat_start runs as a task; give it a moment to emit its greeting or set up the session.
        await asyncio.sleep(0.5)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.sio.disconnect()

    async def ask(self, text: str, *, files: list[tuple[str, bytes, str]] | None = None,
                  stop_after_tokens: int | None = None) -> Reply:
        """One message; `files` (name, bytes, mime) are uploaded first and attached, as the paperclip does
        (with `text=""`, an attachment-only message); `stop_after_tokens`: Stop is pressed once that many tokens of
        the answer have arrived."""
        refs = await self._upload(files) if files else []
        start = len(self.events)
        self.first_token_at = None
        self._tokens, self._stop_after = 0, stop_after_tokens
        self._task_end.clear()
        message = {
            "id": str(uuid.uuid4()), "threadId": "", "name": "user", "type": "user_message",
            "output": text, "createdAt": datetime.now(UTC).isoformat(),
        }
        await self.sio.emit("client_message", {"message": message, "fileReferences": refs})
        # task_start ... task_end brackets the handling of one message.
        await asyncio.wait_for(self._wait_turn(start), timeout=self.timeout)
        return self._reply(self.events[start:])

    async def _upload(self, files: list[tuple[str, bytes, str]]) -> list[dict]:
        refs = []
        for name, data, mime in files:
            r = await self.upload(name, data, mime)
            assert r.status_code == 200, r.text
            refs.append({"id": r.json()["id"]})
        return refs

    async def upload(self, name: str, data: bytes, mime: str):  # noqa: ANN201 - httpx.Response
        """What the paperclip does with one file, before the message is sent: the route's response."""
        import httpx

        async with httpx.AsyncClient(base_url=self.base_url, cookies=self.cookies, timeout=60) as http:
            return await http.post("/chat/project/file", params={"session_id": self.session_id},
                                   files={"file": (name, data, mime)})

    async def _wait_turn(self, start: int) -> None:
        while True:
            await self._task_end.wait()
            names = [n for n, _ in self.events[start:]]
            if "task_start" in names and names[-1] == "task_end" or names.count("task_end") >= 2:
                return
            self._task_end.clear()

    @staticmethod
    def _reply(events: list[tuple[str, dict]]) -> Reply:
        reply = Reply()
        contents: dict[str, str] = {}
        for name, data in events:
            if name == "stream_token":
                reply.tokens.append(data.get("token", ""))
            elif name in ("new_message", "update_message", "stream_start"):
                if data.get("type") == "user_message":
                    continue
                reply.messages.append(data)
                contents[data["id"]] = data.get("output") or contents.get(data["id"], "")
            elif name == "element":
                reply.elements.append(data)
        reply.text = "\n".join(c for c in contents.values() if c)
        return reply
