"""What a chat turn asks the model: the messages (the rendered prompt, the history kept, the user's message), the
answer's cap and the sampling settings — and the small text rules around them (the sign-off, token estimates).
Pure functions: the pipeline's generate stage calls them, nothing here calls a model or a store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from backend.auth.principal import Principal
from backend.chat.types import ChatRequest
from backend.prompts.store import PromptVersion, render


@dataclass
class Composed:
    """The model call's messages and settings. `temperature` is the caller's (a model that refuses it is their
    400); `advisory` holds preferences (a prompt's or an internal task's temperature) a model may go without."""

    messages: list[dict]
    max_tokens: int | None
    temperature: float | None
    advisory: dict[str, Any] = field(default_factory=dict)


def compose(principal: Principal, req: ChatRequest, *, tenant_name: str, prompt: PromptVersion | None, tier: str,
            context: Callable[[], str]) -> Composed:
    """`context`: the passages for the prompt's {context}, formatted only when there is a prompt."""
    # The caller's temperature is theirs (a model that refuses it is their 400); a prompt's or an internal
    # task's is a preference, left out for models that take none (Claude 5.x, GPT-6, Gemini 3.x).
    temperature, advisory = req.temperature, {}
    if req.task and temperature is not None:
        temperature, advisory = None, {"temperature": temperature}
    if prompt is None:
        return Composed(list(req.messages or []), req.max_tokens, temperature, advisory)
    system = render(prompt.body, {
        # An API key serves people whose names we do not know: not "helping API key 3f2a…".
        "user_name": principal.name if principal.auth != "api_key" else "a colleague",
        "tenant_name": tenant_name,
        "today": date.today().isoformat(),
        "context": context(),
    }, declared=prompt.config.get("variables"))
    # The in-process 135M model copies earlier answers into new ones; give it the last exchange only.
    history = req.history[-2:] if tier == "local" else req.history[-10:]
    messages = [{"role": "system", "content": system}, *history, {"role": "user", "content": req.message}]
    # A caller's temperature wins; its max_tokens can only lower the prompt's cap, never raise it.
    if temperature is None and (preferred := _opt_float(prompt.config.get("temperature"))) is not None:
        advisory["temperature"] = preferred
    max_tokens = _opt_int(prompt.config.get("max_tokens"))
    if req.max_tokens is not None:
        max_tokens = min(req.max_tokens, max_tokens) if max_tokens is not None else req.max_tokens
    return Composed(messages, max_tokens, temperature, advisory)


def signoff(prompt: PromptVersion | None) -> str:
    """The prompt's `signoff` line (studio setting), as appended to every answer; "" when none."""
    text = str(prompt.config.get("signoff") or "").strip() if prompt else ""
    return "\n\n" + text if text else ""


def estimate_tokens(messages: list[dict]) -> int:
    """~4 characters per token: enough for a reservation that is settled with the real count."""
    return sum(len(str(m.get("content") or "")) // 4 + 4 for m in messages)


def last_user_text(messages: list[dict], *, skip: int = 0) -> str | None:
    """The text of the last user message (after skipping `skip` of them), or None when there is none."""
    for m in reversed(messages):
        if m.get("role") == "user":
            if skip:
                skip -= 1
                continue
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return None


def _opt_float(v: Any) -> float | None:
    return float(v) if v is not None else None


def _opt_int(v: Any) -> int | None:
    return int(v) if v is not None else None
