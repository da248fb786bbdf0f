"""The outbox worker: sends queued emails when they are due and reconciles unconfirmed sends.

Background threads of every replica drain the outbox (`Outbox.drain`): rows whose lease
ran out are looked for in their mailbox by Message-ID, then due rows are claimed and sent;
replicas share the rows through compare-and-set claims. `on_sent` tells the composition
root when a queued send finally went out or failed, so the card can follow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from domain.clock import Clock
from domain.mail import SendOutcome
from domain.outbox import FinishedSend, Outbox
from jobs.loop import PolledWorker

log = logging.getLogger(__name__)

# org_id, email_send_id, card_id, outcome
# What the listener returns (the card it moved) is not used: the worker only reports.
SendListener = Callable[[int, int, int | None, SendOutcome], object]

# An idle thread looks again when the next row is due, but not sooner than this.
_SHORTEST_WAIT_SECONDS = 0.05
# A send in hand may wait out a slow Gmail call before the process stops.
_STOP_TIMEOUT_SECONDS = 60.0


class OutboxWorker(PolledWorker):
    """Drains the outbox in background threads; `run_once()` runs one round by hand."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        clock: Clock,
        on_sent: SendListener | None = None,
        threads: int = 1,
        batch: int = 20,
        poll_seconds: float = 5.0,
    ) -> None:
        self.outbox = outbox
        self.on_sent = on_sent
        self._clock = clock
        self._batch = batch
        self._poll = poll_seconds
        self._poll_with(
            threads=threads,
            poll_seconds=poll_seconds,
            name="outbox",
            idle_wait=self._idle_wait,
            stop_timeout=_STOP_TIMEOUT_SECONDS,
        )
        outbox.on_queued = self.wake

    def run_once(self) -> int:
        """Run one round: reconcile expired leases, send what is due; return rows handled."""
        report = self.outbox.drain(limit=self._batch)
        for item in report.finished:
            self._tell(item)
        return report.handled

    def _idle_wait(self) -> float:
        """Seconds an idle thread sleeps: until the next row is due, at most a poll."""
        due = self.outbox.next_due_at()
        if due is None:
            return self._poll
        until_due = (due - self._clock.now()).total_seconds()
        return max(_SHORTEST_WAIT_SECONDS, min(self._poll, until_due))

    def _tell(self, item: FinishedSend) -> None:
        if self.on_sent is None:
            return
        try:
            self.on_sent(item.org_id, item.email_send_id, item.card_id, item.outcome)
        except Exception:  # noqa: BLE001 - the send is recorded; the card is refreshed later
            log.exception(
                "on_sent listener failed",
                extra={"email_send_id": item.email_send_id, "card_id": item.card_id},
            )
