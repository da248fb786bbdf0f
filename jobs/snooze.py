"""The snooze sweep: brings the cards whose snooze ended back, as new messages.

Run by the process's periodic scheduler (jobs/scheduler.py), it takes the periodic lock
(one process sweeps at a time), claims the due snoozed cards
under a lease and posts each again (`Snoozing.bring_back_due`). The claim is a
compare-and-set on `snoozed_until` in any case, so two sweepers never bring a card back
twice; a sweeper that dies leaves its claims to run out and be taken again.
"""

from __future__ import annotations

import logging

from domain.outreach import Snoozing
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME = "salesbot:snooze-sweep"


class SnoozeSweep:
    """Brings snoozed cards back, a batch a round (the scheduler runs rounds while found)."""

    NAME = "snooze-sweep"

    def __init__(self, snoozing: Snoozing, session_factory: SessionFactory) -> None:
        self._snoozing = snoozing
        self._sessions = session_factory

    def run_once(self) -> int:
        """Bring back one batch of cards whose snooze ended; return how many (0: none)."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                return 0
            return self._snoozing.bring_back_due()
