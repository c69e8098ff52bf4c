"""How a tier answers a question the knowledge base covers: `answers:` in config/models.yaml, per tier.

- `mode: grounded` — the answer is the retrieved passages' own statements with their citations
  (backend/chat/grounded.py): no model call, nothing a passage does not say.
- `mode: generative` — the model writes the answer from the passages.
- `grounding_check: true` — every sentence a model writes is checked against the passages it cites
  (backend/chat/grounding_check.py); an unsupported one is marked, and an answer mostly unsupported is followed
  by the grounded answer.

Unset, a tier answers `grounded` when every model of it runs in-process (the 135M demo model, whose own answers
cannot be trusted with facts) and `generative` otherwise; the check is on for the `local` tier (a small model a
department runs for confidentiality) and off for the others. A prompt version may set `answer_mode` and
`grounding_check` in its settings (the studio), which win over the tier's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.config_files import ConfigError

MODES = ("grounded", "generative")
IN_PROCESS_PREFIX = "local/"


@dataclass(frozen=True)
class AnswerPolicy:
    mode: str  # grounded | generative
    grounding_check: bool
    reason: str  # where the choice came from, shown in the studio and recorded with the turn


def check_answers(raw: Any, *, source: object = "models.yaml") -> dict[str, dict[str, Any]]:
    """The `answers:` section, validated at start: a wrong value names the tier and what is allowed."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: `answers:` must map a tier to {{mode: grounded|generative, "
                          f"grounding_check: true|false}}")
    out: dict[str, dict[str, Any]] = {}
    for tier, spec in raw.items():
        if not isinstance(spec, dict) or set(spec) - {"mode", "grounding_check"}:
            raise ConfigError(f"{source}: answers.{tier} takes `mode` (grounded|generative) and "
                              f"`grounding_check` (true|false), got {spec!r}")
        if "mode" in spec and spec["mode"] not in MODES:
            raise ConfigError(f"{source}: answers.{tier}.mode is {spec['mode']!r}; use one of {', '.join(MODES)}")
        if "grounding_check" in spec and not isinstance(spec["grounding_check"], bool):
            raise ConfigError(f"{source}: answers.{tier}.grounding_check must be true or false")
        out[str(tier)] = dict(spec)
    return out


def policy_for(tier: str, *, answers: dict[str, dict[str, Any]], models: list[str],
               prompt_config: dict[str, Any] | None = None) -> AnswerPolicy:
    """The answer mode and check of a turn on `tier` (whose live models are `models`), a prompt's settings
    first. A prompt's unknown mode is ignored here (the studio refuses to save one)."""
    spec = answers.get(tier, {})
    in_process = bool(models) and all(m.startswith(IN_PROCESS_PREFIX) for m in models)
    mode = spec.get("mode") or ("grounded" if in_process else "generative")
    reason = (f"models.yaml answers.{tier}.mode" if "mode" in spec
              else f"the {tier} tier's model runs in-process (a small demo model)" if in_process
              else f"the {tier} tier's default")
    check = spec.get("grounding_check", tier == "local")
    cfg = prompt_config or {}
    if cfg.get("answer_mode") in MODES:
        mode, reason = str(cfg["answer_mode"]), "the prompt version's answer_mode"
    if isinstance(cfg.get("grounding_check"), bool):
        check = bool(cfg["grounding_check"])
    return AnswerPolicy(mode=mode, grounding_check=bool(check), reason=reason)
