"""The cadence tick (issue 13) as a periodic job of the process's scheduler.

Every `salesbot worker` (and the all-in-one `salesbot serve`) schedules the tick
(jobs/scheduler.py); the tick takes the periodic lock (`storage.inbound.periodic_lock`: an
advisory lock on PostgreSQL, a lease row on SQLite), so one process runs each tick, and
claims due enrollments with FOR UPDATE SKIP LOCKED in any case. The tick works through at
most `CADENCE_TICK_LIMIT` enrollments in due order, so a backlog after downtime drains over
a few ticks instead of in one burst.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from domain.outreach import Cadences, TickReport
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME = "salesbot:cadence-tick"


class CadenceScheduler:
    """The cadence tick as the scheduler runs it: under the periodic lock; `on_tasks`
    wakes the task worker after a tick that made tasks."""

    NAME = "cadence-tick"

    def __init__(
        self,
        cadences: Cadences,
        session_factory: SessionFactory,
        *,
        on_tasks: Callable[[], None] | None = None,
    ) -> None:
        self._cadences = cadences
        self._sessions = session_factory
        self._on_tasks = on_tasks

    def run_once(self, org_id: int | None = None) -> TickReport | None:
        """Run one tick (of one organization, given `org_id`) if no other process is
        running one; None when one is."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                log.debug("cadence tick running elsewhere")
                return None
            report = self._cadences.tick(org_id=org_id)
        if report.tasks_created and self._on_tasks is not None:
            self._on_tasks()
        return report

    def run_round(self) -> int:
        """One tick as a scheduler round: 0 (the tick drains its own backlog per run)."""
        self.run_once()
        return 0
