"""The snooze sweep: brings the cards whose snooze ended back, as new messages.

Every `poll_seconds` it takes an advisory lock on PostgreSQL (one replica sweeps at a
time; SQLite serves one process, which always takes it), claims the due snoozed cards
under a lease and posts each again (`Snoozing.bring_back_due`). The claim is a
compare-and-set on `snoozed_until` in any case, so two sweepers never bring a card back
twice; a sweeper that dies leaves its claims to run out and be taken again.
"""

from __future__ import annotations

import logging

from domain.outreach import Snoozing
from jobs.loop import PolledWorker
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME = "salesbot:snooze-sweep"


class SnoozeSweep(PolledWorker):
    """One thread that brings snoozed cards back every `poll_seconds`."""

    def __init__(
        self,
        snoozing: Snoozing,
        session_factory: SessionFactory,
        *,
        poll_seconds: float = 30.0,
    ) -> None:
        self._snoozing = snoozing
        self._sessions = session_factory
        self._poll_with(threads=1, poll_seconds=poll_seconds, name="snooze-sweep")

    def run_once(self) -> int:
        """Bring back one batch of cards whose snooze ended; return how many (0: none)."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                return 0
            return self._snoozing.bring_back_due()
