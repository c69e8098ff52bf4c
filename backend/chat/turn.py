"""A chat turn in flight, and its usage row.

`Turn` is what the pipeline's stages (backend/chat/pipeline.py) hand to one another: the request, the prompt and
tier chosen, the passages, the model's messages and answer, the quota reservation — and the usage row. The row
is written when the model call starts (`streaming`, owned by this process; a non-streaming call's 1-1.5 s
later, unless it has finished by then), its tokens so far now and then while
the answer streams (at most one write per `progress_s`), and at the end, whatever happened (`completed`, or
`interrupted` when the caller went away or the call failed); a process that dies leaves it `streaming`, and the
survivors mark it interrupted (governance/leases.py). `UsageRecorder` makes those writes (through the durable
UsageWriter, off the event loop) and the turn's log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from backend.auth.principal import Principal
from backend.chat.continuation import Continuation
from backend.chat.types import ChatRequest
from backend.db.engine import Database
from backend.db.models import ChatTurn, utcnow
from backend.db.repositories.turns import finish_turns, row_values
from backend.governance.metrics import NoMetrics
from backend.governance.quotas import Admission
from backend.governance.usage import UsageWriter
from backend.knowledge.retrieval import Citation
from backend.llm.knowledge_need import KnowledgeNeed
from backend.llm.service import Completion
from backend.prompts.store import PromptVersion
from backend.tenants import ModelPolicy
from backend.tracing import TENANT, recording, span

log = logging.getLogger("atrium.chat")


@dataclass
class Turn:
    """One turn in flight: what each stage hands to the next, and what the record stage writes."""

    principal: Principal
    req: ChatRequest
    row: ChatTurn  # the usage row (repositories.usage.new_turn): written at the start, the end, and in between
    policy: ModelPolicy
    tenant_name: str
    began: float = field(default_factory=time.perf_counter)
    prompt: PromptVersion | None = None
    tier: str = ""  # as routed (the row's tier becomes the one that answered)
    cache_key: str | None = None
    citations: list[Citation] = field(default_factory=list)
    continuation: Continuation | None = None  # "continue" after a cut answer: that answer, and its question
    need: KnowledgeNeed | None = None  # no passage found and none needed: what the prompt's {context} says
    messages: list[dict] = field(default_factory=list)  # as sent to the model
    max_tokens: int | None = None
    admission: Admission | None = None
    notes: list[str] = field(default_factory=list)  # the result's warnings
    streamed: list[str] = field(default_factory=list)  # the answer so far: counted if the caller goes away mid-answer
    final: Completion | None = None  # the model's answer
    signoff: str = ""
    grounding: dict | None = None  # how the answer was made and checked (chat/answers.py): API atrium.grounding
    recorded: bool = False  # the row is written: a caller closing the stream after the result changes nothing
    started: bool = False  # the model call started: its row was written as `streaming`
    last_progress: float = 0.0  # when the tokens so far were last written
    first_token: float | None = None  # perf_counter of the model's first text (time to first token)

    @property
    def plain(self) -> bool:
        """A plain completion (an internal task, an OpenAI-compatible `model: fast`): no prompt, no retrieval."""
        return self.req.messages is not None


def member_of(t: Turn) -> dict:
    """Whose budgets a turn's model call falls under besides the tenant's: the member's (their roles and claim
    groups choose their allowance) and the assistant's. An internal task (a query rewrite, a title) counts against
    the member who caused it and the assistant it ran for."""
    roles, groups = t.principal.allowance_basis(t.req.tenant)  # an API key: its owner's
    return {"roles": roles, "groups": groups, "assistant": t.req.assistant or None}


class UsageRecorder:
    """Writes a turn's usage row (through the batching UsageWriter when there is one) and logs it."""

    def __init__(self, *, db: Database, writer: UsageWriter | None = None, owner: str | None = None,
                 progress_s: float = 2.0, metrics: NoMetrics | None = None) -> None:
        self.db = db
        self.metrics = metrics or NoMetrics()
        self.writer = writer
        self.owner = owner
        self.progress_s = progress_s

    def start(self, t: Turn) -> None:
        """The model call starts: the row as `streaming`, owned by this process (not awaited). A non-streaming
        call's is written only if it has not finished 1-1.5 s later (UsageWriter: most short calls never need it)."""
        row = t.row
        row.status, row.owner, row.updated_at = "streaming", self.owner, utcnow()
        t.started, t.last_progress = True, time.perf_counter()
        if t.req.record and self.writer is not None:
            self.writer.start(row, defer=not t.req.stream)

    def progress_due(self, t: Turn) -> bool:
        return (t.started and t.req.record and self.writer is not None
                and time.perf_counter() - t.last_progress >= self.progress_s)

    def progress(self, t: Turn) -> None:
        """The tokens so far (the caller set them on the row); at most one write per `progress_s`."""
        assert self.writer is not None
        t.last_progress = time.perf_counter()
        t.row.updated_at = utcnow()
        self.writer.progress(t.row)

    async def write(self, t: Turn) -> int:
        """The turn's latency (ms), now set on its row; the row is written unless the request says not to."""
        turn = t.row
        turn.latency_ms = int((time.perf_counter() - t.began) * 1000)
        turn.updated_at = utcnow()
        if turn.status == "streaming":  # the caller says how it ended; a turn that never started completes
            turn.status = "completed"
        if t.req.record:  # off the event loop: a commit waits on the disk, and every other request with it
            if recording():
                with span("atrium.usage.write", {TENANT: turn.tenant, "atrium.outcome": turn.outcome}):
                    await self._write(turn)
            else:  # no span context manager when tracing is off (its enter and exit are most of this path)
                await self._write(turn)
        self.metrics.chat_turn(
            tenant=turn.tenant, assistant=turn.assistant, channel=turn.channel, tier=turn.tier, model=turn.model,
            outcome=turn.outcome, seconds=turn.latency_ms / 1000,
            first_token_s=None if t.first_token is None else t.first_token - t.began,
            input_tokens=turn.prompt_tokens or 0, output_tokens=turn.completion_tokens or 0,
            cost_usd=turn.cost_usd or 0.0, fallback_from=turn.fallback_from)
        if log.isEnabledFor(logging.INFO):  # the line's dict is built for nothing otherwise (every model call)
            log.info("chat turn", extra={
                "tenant": turn.tenant, "subject": turn.subject, "assistant": turn.assistant,
                "prompt_version": turn.prompt_version, "model": turn.model, "tier": turn.tier,
                "prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens,
                "cost_usd": turn.cost_usd, "latency_ms": turn.latency_ms, "outcome": turn.outcome,
                "channel": turn.channel,
            })
        return turn.latency_ms

    async def _write(self, turn: ChatTurn) -> None:
        if self.writer is not None:
            await self.writer.write(turn)
        else:
            await asyncio.to_thread(self._insert, turn)

    def _insert(self, turn: ChatTurn) -> None:
        with self.db.session() as session:
            ids = finish_turns(session=session, rows=[row_values(turn)])
            session.commit()
        turn.id = ids.get(turn.turn_key)
