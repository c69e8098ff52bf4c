"""A chat turn in flight, and its usage row.

`Turn` is what the pipeline's stages (backend/chat/pipeline.py) hand to one another: the request, the prompt and
tier chosen, the passages, the model's messages and answer, the quota reservation — and the usage row that is
written once at the end, whatever happened. `UsageRecorder` writes that row (off the event loop) and its log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from backend.auth.principal import Principal
from backend.chat.types import ChatRequest
from backend.db.engine import Database
from backend.db.models import ChatTurn
from backend.db.repositories.usage import insert_turns
from backend.governance.quotas import Admission
from backend.governance.usage import UsageWriter
from backend.knowledge.retrieval import Citation
from backend.llm.knowledge_need import KnowledgeNeed
from backend.llm.service import Completion
from backend.prompts.store import PromptVersion
from backend.tenants import ModelPolicy

log = logging.getLogger("atrium.chat")


@dataclass
class Turn:
    """One turn in flight: what each stage hands to the next, and what the record stage writes."""

    principal: Principal
    req: ChatRequest
    row: ChatTurn  # the usage row (repositories.usage.new_turn), written once at the end
    policy: ModelPolicy
    tenant_name: str
    started: float = field(default_factory=time.perf_counter)
    prompt: PromptVersion | None = None
    tier: str = ""  # as routed (the row's tier becomes the one that answered)
    cache_key: str | None = None
    citations: list[Citation] = field(default_factory=list)
    need: KnowledgeNeed | None = None  # no passage found and none needed: what the prompt's {context} says
    messages: list[dict] = field(default_factory=list)  # as sent to the model
    max_tokens: int | None = None
    admission: Admission | None = None
    notes: list[str] = field(default_factory=list)  # the result's warnings
    streamed: list[str] = field(default_factory=list)  # the answer so far: counted if the caller goes away mid-answer
    final: Completion | None = None  # the model's answer
    signoff: str = ""
    recorded: bool = False  # the row is written: a caller closing the stream after the result changes nothing

    @property
    def plain(self) -> bool:
        """A plain completion (an internal task, an OpenAI-compatible `model: fast`): no prompt, no retrieval."""
        return self.req.messages is not None


class UsageRecorder:
    """Writes a turn's usage row (through the batching UsageWriter when there is one) and logs it."""

    def __init__(self, *, db: Database, writer: UsageWriter | None = None) -> None:
        self.db = db
        self.writer = writer

    async def write(self, t: Turn) -> int:
        """The turn's latency (ms), now set on its row; the row is written unless the request says not to."""
        turn = t.row
        turn.latency_ms = int((time.perf_counter() - t.started) * 1000)
        if t.req.record:  # off the event loop: a commit waits on the disk, and every other request with it
            if self.writer is not None:
                await self.writer.write(turn)
            else:
                await asyncio.to_thread(self._insert, turn)
        log.info("chat turn", extra={
            "tenant": turn.tenant, "subject": turn.subject, "assistant": turn.assistant,
            "prompt_version": turn.prompt_version, "model": turn.model, "tier": turn.tier,
            "prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens,
            "cost_usd": turn.cost_usd, "latency_ms": turn.latency_ms, "outcome": turn.outcome,
            "channel": turn.channel,
        })
        return turn.latency_ms

    def _insert(self, turn: ChatTurn) -> None:
        with self.db.session() as session:
            insert_turns(session=session, turns=[turn])
