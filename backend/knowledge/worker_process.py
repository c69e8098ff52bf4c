"""`atrium worker`: the ingestion worker as a process of its own (a Deployment of its own in production).

Any number of these, and web pods running the in-process worker thread, take jobs from the same table safely
(repositories/documents.claim_next_job). SIGTERM or SIGINT stops it cleanly: the batch being embedded is finished
and checkpointed, and the unfinished job is handed back for another worker to continue at once.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

from backend.knowledge.service import KnowledgeService

log = logging.getLogger("atrium.knowledge")


def run_worker(knowledge: KnowledgeService) -> int:
    """Run ingestion jobs in this thread until SIGTERM/SIGINT; returns the exit code."""
    worker = knowledge.worker

    def _stop(signum: int, _frame: FrameType | None) -> None:
        if worker.stopping:
            return
        log.info("stop requested: finishing the current batch", extra={"signal": signal.Signals(signum).name,
                                                                         "worker": worker.worker_id})
        worker.request_stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("ingestion worker started", extra={"worker": worker.worker_id, "lease_s": worker.config.lease_s,
                                                "batch_size": worker.config.batch_size})
    try:
        worker.run_forever(warm=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("ingestion worker stopped", extra={"worker": worker.worker_id})
    return 0
