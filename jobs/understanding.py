"""The inbound pipeline's worker: claims parsed messages and understands them.

Woken by the Gmail sync when it stores parsed messages (`GmailInboundProcessor.on_parsed`)
and polling otherwise (messages parsed by another replica, retries and re-classifications
that became due). Each round is `Understanding.run_once()`: claim under a lease, decide
outside any unit of work, record in one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from domain.understanding import RoundOutcome, Understanding
from integrations import metrics
from jobs.loop import PolledWorker

log = logging.getLogger(__name__)


class UnderstandingWorker(PolledWorker):
    """Runs the inbound pipeline in polling threads (one is plenty on two cores).

    `on_processed` is called after a round that processed messages: the cards it made
    queued draft and post tasks, and the workers of those wait for a wake-up or their
    next poll (WORKER_POLL_SECONDS, 5 s: it was 2.6 s of a reply card's 3.1 s median,
    `python -m bench reply_card_latency`).
    """

    def __init__(
        self,
        understanding: Understanding,
        *,
        threads: int = 1,
        poll_seconds: float = 5.0,
        on_processed: Callable[[], None] | None = None,
    ) -> None:
        self.understanding = understanding
        self._on_processed = on_processed
        self._poll_with(threads=threads, poll_seconds=poll_seconds, name="inbound-understanding")

    def run_once(self) -> int:
        """Process one batch; return how many messages were claimed."""
        outcome = self.understanding.run_once()
        record_round(outcome)
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
        if outcome.processed and self._on_processed is not None:
            self._on_processed()
        return outcome.claimed


# Actions of the pipeline that are bounces, by the kind `salesbot_bounces_total` counts.
_BOUNCES = {"marked_bounced": "hard", "soft_bounce_counted": "soft"}


def record_round(outcome: RoundOutcome) -> None:
    """Count what a pipeline round did in the metrics."""
    stage = metrics.INBOUND_MESSAGES
    for name in ("processed", "failed", "parked", "skipped"):
        count = getattr(outcome, name)
        if count:
            stage.labels("understanding", name).inc(count)
    for source, count in outcome.decided_by.items():
        metrics.CLASSIFICATIONS.labels(source).inc(count)
    for action, count in outcome.actions.items():
        metrics.INBOUND_ACTIONS.labels(action).inc(count)
        if action in _BOUNCES:
            metrics.BOUNCES.labels(_BOUNCES[action]).inc(count)
        elif action == "opted_out":
            metrics.OPT_OUTS.labels("email").inc(count)
