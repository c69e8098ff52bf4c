"""What one admitted model call reserved (QuotaService.admit): the counters and amounts it holds, under one hold
id whose lease the admitting process renews until the call is settled or released."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from backend.governance.allowances import Level
from backend.governance.ratelimit import hold_member


@dataclass
class Admission:
    tenant: str
    reserved_tokens: int = 0
    reserved_micro_usd: int = 0
    token_key: str | None = None
    budget_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    settled: bool = False
    hold: str = field(default_factory=lambda: uuid.uuid4().hex)  # the reservation's id (its lease is renewed)
    levels: list[Level] = field(default_factory=list)  # every counter reserved on: tenant, member, assistant
    allowance: str | None = None  # the member's allowance it was admitted under (Allowance.source)

    def holds(self) -> list[tuple[str, str]]:
        """(counter key, hold member) of what this admission reserved."""
        return [(lv.key, hold_member(self.hold, lv.amount)) for lv in self.levels if lv.amount > 0]
