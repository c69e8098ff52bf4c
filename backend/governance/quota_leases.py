"""Reservations are holds with a lease (ratelimit.py): this process renews the holds of its own answers in
progress (one call per lease/3 for all of them, from a task on the event loop that admitted them), so only a process
that died stops renewing: its holds lapse a lease later and the next admission purges them."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from backend.governance.quota_admission import Admission
from backend.governance.ratelimit import LimitBackend

log = logging.getLogger("atrium.quotas")


class HoldKeeper:
    def __init__(self, *, backend: LimitBackend, lease_s: float) -> None:
        self.backend = backend
        self.lease_s = lease_s
        self.live: dict[str, Admission] = {}  # hold -> admission, while its answer is in progress
        self._task: asyncio.Task | None = None

    def keep(self, adm: Admission, *, lease_s: float) -> None:
        if not any(lv.amount > 0 for lv in adm.levels):  # holds nothing (Admission.holds() without its list)
            return
        self.lease_s = lease_s
        self.live[adm.hold] = adm
        if self._task is None or self._task.done() or self._task.get_loop() is not asyncio.get_running_loop():
            # In a context of its own: started by whichever request first holds a reservation, it renews every
            # request's, so its lines must not carry that request's id and trace (backend/logs.py), nor its spans.
            self._task = asyncio.get_running_loop().create_task(self._renew_while_live(), name="quota-leases",
                                                                context=contextvars.Context())

    def drop(self, adm: Admission) -> None:
        self.live.pop(adm.hold, None)

    async def _renew_while_live(self) -> None:
        """Renew the live holds every lease/3 (one call for all of them); stops when none is left."""
        while self.live:
            await asyncio.sleep(self.lease_s / 3)
            holds = [h for adm in list(self.live.values()) if not adm.settled for h in adm.holds()]
            try:
                await self.backend.renew(holds, self.lease_s)
            except Exception:  # the next round tries again; a lapsed hold only lets a request in early
                log.warning("could not renew quota reservations", exc_info=True)

