"""The pipeline's last stage, record: the usage row, the quota reservation settled with what the answer really
cost (or released when it failed), the response cache; and a turn that did not finish (refused, failed, or stopped by
its caller), recorded once. A mixin of ChatService (backend/chat/pipeline.py), whose attributes it reads.
"""

from __future__ import annotations

import asyncio
import logging

from backend.chat.cache import TurnCache
from backend.chat.compose import estimate_tokens
from backend.chat.errors import as_atrium_error
from backend.chat.turn import Turn, UsageRecorder
from backend.chat.types import TurnResult
from backend.errors import AtriumError, QuotaExceeded
from backend.governance.quotas import Admission, QuotaService
from backend.llm.service import LLMService

log = logging.getLogger("atrium.chat")


class RecordStage:
    """What a turn cost, written and settled, whatever way it ended."""

    llm: LLMService
    quotas: QuotaService | None
    usage: UsageRecorder
    turn_cache: TurnCache

    async def _record(self, t: Turn, result: TurnResult, *, cache: bool = False) -> TurnResult:
        """The turn's row and log line; the reservation settled with what the answer really cost; `cache`: the
        model's answer is stored for the next first-turn question that keys the same."""
        t.recorded = True  # from here on a failure (or a caller going away) is not the turn's: not recorded twice
        t.row.status = "completed"
        result.latency_ms = await self.usage.write(t)
        result.turn_id = t.row.id
        if t.admission is not None and self.quotas:
            await self.quotas.settle(t.admission, tokens=result.prompt_tokens + result.completion_tokens,
                                     cost_usd=result.cost_usd)
        if cache:
            await self.turn_cache.put(t.cache_key, result)
        return result

    async def _failed(self, t: Turn, exc: BaseException) -> AtriumError | None:
        """Record a turn that did not finish — refused (a quota, a limit), failed, or stopped by its caller — and
        return the error to raise in place of `exc` (a model failure the caller can act on), else None."""
        if t.recorded:  # the whole answer and its result were delivered; the caller just closed the stream
            return None
        row = t.row
        if isinstance(exc, AtriumError):
            row.outcome = "quota" if isinstance(exc, QuotaExceeded) else "refused"
            row.error = exc.message
            await self._release(t.admission)
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            await self._stopped(t, exc)
        else:
            row.outcome, row.error = "error", f"{type(exc).__name__}: {exc}"[:500]
            await self._release(t.admission)
        row.status = "interrupted" if row.outcome in ("cancelled", "error") else "completed"
        await self.usage.write(t)
        return as_atrium_error(exc) if row.outcome == "error" else None

    async def _stopped(self, t: Turn, exc: BaseException) -> None:
        """The caller went away (closed the stream, disconnected): the model was stopped, and what it read and
        wrote so far is counted, as a provider bills it (estimated: ~4 characters per token)."""
        row = t.row
        row.outcome, row.error = "cancelled", f"the caller went away ({type(exc).__name__})"
        self._so_far(t)
        if t.admission is not None and self.quotas and row.prompt_tokens:
            await self.quotas.settle(t.admission, tokens=row.prompt_tokens + row.completion_tokens,
                                     cost_usd=row.cost_usd)
        else:
            await self._release(t.admission)

    def _so_far(self, t: Turn) -> None:
        """What the model read and wrote so far, on the row (estimated: ~4 characters per token)."""
        row = t.row
        if t.messages and row.tier:
            row.prompt_tokens = estimate_tokens(t.messages)
            row.completion_tokens = len("".join(t.streamed)) // 4
            row.cost_usd = self.llm.estimate_cost(row.tier, row.prompt_tokens, row.completion_tokens)

    async def _release(self, admission: Admission | None) -> None:
        if admission is not None and self.quotas:
            try:
                await self.quotas.release(admission)
            except Exception:  # pragma: no cover - the counter is re-seeded from SQL at the next period
                log.exception("could not release a quota reservation")
