"""The daily lead scores and stale-client ranking, as a periodic job of the scheduler.

Every `salesbot worker` (and `salesbot serve`) schedules it hourly (jobs/scheduler.py).
A round takes the periodic lock (`storage.inbound.periodic_lock`: an advisory lock on
PostgreSQL, a lease row on SQLite), so one process works at a time, then claims the
organization whose ranking is the oldest, if it is more than a day old
(`targeting_runs.computed_at`; the claim is a compare-and-set on `attempted_at`, so two
claimers never take the same organization), scores every contact of it and ranks its
stale clients (`domain.targeting.Targeting.recompute`). The scheduler runs rounds while
they find an organization: one hourly check brings every organization up to date, each
about a day after its previous run. A run that fails is recorded on the organization (the
API shows it) and tried again an hour later.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from domain.targeting import Targeting
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME = "salesbot:targeting-daily"


class TargetingJob:
    """Recompute the lead scores and the ranking of the organizations that are due, one
    organization a round."""

    NAME = "targeting-daily"
    #: How often the scheduler looks for organizations whose ranking is a day old.
    EVERY = timedelta(hours=1)
    #: Organizations one hourly run may work through before waiting for the next.
    MAX_ROUNDS = 1000

    def __init__(
        self,
        targeting: Targeting,
        session_factory: SessionFactory,
        *,
        lease: timedelta = timedelta(minutes=30),
    ) -> None:
        self._targeting = targeting
        self._sessions = session_factory
        # On SQLite the lock is a lease row: long enough for a large organization's run.
        self._lease = lease

    def run_once(self) -> int:
        """Recompute one due organization; return 1, or 0 when none is due or another
        process holds the lock."""
        with periodic_lock(self._sessions, LOCK_NAME, lease=self._lease) as taken:
            if not taken:
                log.debug("targeting run held elsewhere")
                return 0
            return self._targeting.recompute_due()
