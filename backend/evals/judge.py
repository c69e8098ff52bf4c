"""An optional judge: a provider model that grades whether an answer states the expected facts and is grounded in
its cited passages, for what the offline checks cannot see (a fact stated in other words and another structure, a
claim the embedder finds close to a passage that says something else).

Asked only when a run requests it and the internal tier (`fast`) is a provider model (the in-process 135M model
cannot judge). Each grading is an internal call of the pipeline (ChatService.internal: channel `internal`, quotas,
charged to the member who runs the evaluation). When the judge answers, its verdict is the check's (the offline
verdict stays in the check as `offline_ok`); when its reply cannot be read, the offline verdict stands.
"""

from __future__ import annotations

import json
import re
from typing import Any

from backend.auth.principal import Principal
from backend.chat.pipeline import ChatService
from backend.evals.checks import Answered, refused

TASK = "eval_judge"
SYSTEM = ("You grade an assistant's answer for a test. Reply with JSON only, no prose around it: "
          '{"facts": [true|false for each expected fact, in order], "grounded": true|false, "why": "one sentence"}. '
          "A fact is stated when the answer says it (other words are fine; a contradiction or a different number is "
          "not). The answer is grounded when every claim in it is supported by the passages.")
MAX_PASSAGE_CHARS = 1_200


class ModelJudge:
    def __init__(self, *, chat: ChatService) -> None:
        self.chat = chat

    def name(self, tenant_allowed: list[str]) -> str | None:
        """The judge that would grade now ("fast: openai/gpt-4o-mini"), or None when no provider model can."""
        llm = self.chat.llm
        tier = llm.internal_model_tier(tenant_allowed, "auto")
        if tier is None:
            return None
        return f"{tier}: {', '.join(llm.live.live.get(tier, []))}"

    async def grade(self, principal: Principal, tenant: str, assistant: str, case: dict[str, Any],
                    answered: Answered, checks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        facts = case.get("facts") or []
        gradable = bool(answered.citations) and not refused(answered)
        if not facts and not gradable:
            return checks
        passages = "\n\n".join(f"[{i}] {c.title}: {c.quote[:MAX_PASSAGE_CHARS]}"
                               for i, c in enumerate(answered.citations, 1))
        ask = json.dumps({"question": case.get("question"), "expected_facts": facts, "passages": passages,
                          "answer": answered.answer}, ensure_ascii=False)
        result = await self.chat.internal(principal, tenant, task=TASK, max_tokens=300, assistant=assistant,
                                          messages=[{"role": "system", "content": SYSTEM},
                                                    {"role": "user", "content": ask}])
        verdict = _read(result.answer)
        note = {"model": result.model, "cost_usd": result.cost_usd,
                "tokens": result.prompt_tokens + result.completion_tokens}
        out = {k: dict(v) for k, v in checks.items()}
        if verdict is None:
            for name in ("facts", "grounded"):
                out[name]["judge"] = {**note, "ok": None, "why": "the judge's reply could not be read"}
            return out
        why = str(verdict.get("why") or "")[:300]
        stated = verdict.get("facts")
        if facts and isinstance(stated, list) and len(stated) == len(facts) and all(isinstance(x, bool)
                                                                                     for x in stated):
            out["facts"] = {**out["facts"], "offline_ok": out["facts"]["ok"], "ok": all(stated),
                            "judge": {**note, "ok": all(stated), "items": stated, "why": why}}
        if gradable and isinstance(verdict.get("grounded"), bool):
            out["grounded"] = {**out["grounded"], "offline_ok": out["grounded"]["ok"], "ok": verdict["grounded"],
                               "judge": {**note, "ok": verdict["grounded"], "why": why}}
        return out


def _read(text: str) -> dict[str, Any] | None:
    match = re.search(r"\{.*\}", text or "", re.S)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
