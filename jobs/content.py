"""The content calendar's due-card sweep (docs/content-calendar.md): a periodic job of the
process's scheduler that posts the card of each scheduled post whose morning came.

It takes the periodic lock (one process sweeps at a time), and the claims are leased rows
taken with SKIP LOCKED in any case (`ContentCalendar.post_due`): a worker that dies
between its claim and the card's record leaves the lease to run out, and the next one
posts the card (or finds the one Slack already had).
"""

from __future__ import annotations

import logging
from typing import Final

from domain.content_service import ContentCalendar
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME: Final = "salesbot:content-cards"


class ContentSweep:
    """Posts due content cards, a batch a round (the scheduler runs rounds while found)."""

    NAME: Final = "content-cards"

    def __init__(self, calendar: ContentCalendar, session_factory: SessionFactory) -> None:
        self._calendar = calendar
        self._sessions = session_factory

    def run_once(self) -> int:
        """Post one batch of due cards; return how many were claimed (0: none)."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                log.debug("content sweep running elsewhere")
                return 0
            return self._calendar.post_due()
