"""The newsletter sweep (docs/newsletters.md): posts issues' preview cards, plans approved
issues, and moves issues to `sending` and `sent` as the outbox sends their emails.

Run by the process's periodic scheduler under the periodic lock (one process sweeps at a
time), and woken by a submission or an approval. Planning is carried on from the issue's
cursor by whichever process takes it once the lease of a dead planner is over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from domain.newsletter_service import Newsletters
from storage.db import SessionFactory
from storage.inbound import periodic_lock

LOCK_NAME: Final = "salesbot:newsletter-sweep"


class NewsletterSweep:
    """One round: cards, planning, progress (the scheduler chains rounds while busy)."""

    NAME = "newsletter-sweep"
    EVERY = timedelta(seconds=30)

    def __init__(self, newsletters: Newsletters, session_factory: SessionFactory) -> None:
        self._newsletters = newsletters
        self._sessions = session_factory

    def run_once(self) -> int:
        """Run one round; return how much it did (0: nothing to do)."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                return 0
            return self._newsletters.run_once()
