"""The inbound pipeline's worker: claims parsed messages and understands them.

Woken by the Gmail sync when it stores parsed messages (`GmailInboundProcessor.on_parsed`)
and polling otherwise (messages parsed by another replica, retries and re-classifications
that became due). Each round is `Understanding.run_once()`: claim under a lease, decide
outside any unit of work, record in one.
"""

from __future__ import annotations

import logging

from domain.understanding import Understanding
from jobs.loop import PolledWorker

log = logging.getLogger(__name__)


class UnderstandingWorker(PolledWorker):
    """Runs the inbound pipeline in polling threads (one is plenty on two cores)."""

    def __init__(
        self, understanding: Understanding, *, threads: int = 1, poll_seconds: float = 5.0
    ) -> None:
        self.understanding = understanding
        self._poll_with(threads=threads, poll_seconds=poll_seconds, name="inbound-understanding")

    def run_once(self) -> int:
        """Process one batch; return how many messages were claimed."""
        outcome = self.understanding.run_once()
        if outcome.claimed:
            log.info(
                "inbound messages understood",
                extra={
                    "claimed": outcome.claimed,
                    "processed": outcome.processed,
                    "failed": outcome.failed,
                    "parked": outcome.parked,
                    "reclassified": outcome.reclassified,
                },
            )
        return outcome.claimed
