"""The scheduler of periodic work: the cadence tick (issue 13), run by APScheduler.

APScheduler's job store lives in each process, so every `salesbot worker` (and the
all-in-one `salesbot serve`) schedules the tick; the tick takes the periodic lock
(`storage.inbound.periodic_lock`: an advisory lock on PostgreSQL, a lease row on SQLite),
so one process runs each tick, and claims due enrollments with FOR UPDATE SKIP LOCKED in
any case. `coalesce` folds the runs a stopped process missed into one, and the tick works
through at most `CADENCE_TICK_LIMIT` enrollments in due order, so a backlog after downtime
drains over a few ticks instead of in one burst.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from domain.outreach import Cadences, TickReport
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME = "salesbot:cadence-tick"


class CadenceScheduler:
    """Runs the cadence tick every `every` in a background scheduler."""

    def __init__(
        self,
        cadences: Cadences,
        session_factory: SessionFactory,
        *,
        every: timedelta = timedelta(minutes=1),
        on_tasks: Callable[[], None] | None = None,
    ) -> None:
        self._cadences = cadences
        self._sessions = session_factory
        self._every = every
        self._on_tasks = on_tasks
        self._scheduler: BackgroundScheduler | None = None

    def run_once(self) -> TickReport | None:
        """Run one tick if no other process is running one; None when one is."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                log.debug("cadence tick running elsewhere")
                return None
            report = self._cadences.tick()
        if report.tasks_created and self._on_tasks is not None:
            self._on_tasks()
        return report

    def _run(self) -> None:
        try:
            self.run_once()
        except Exception:  # noqa: BLE001 - a failed tick is logged; the next one runs anyway
            log.exception("cadence tick failed")

    def start(self) -> None:
        """Schedule the tick (first run after one interval, then every interval)."""
        if self._scheduler is not None:
            return
        scheduler = BackgroundScheduler(timezone=UTC)
        seconds = self._every.total_seconds()
        scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=seconds, timezone=UTC),
            id="cadence-tick",
            name="cadence-tick",
            next_run_time=datetime.now(UTC) + timedelta(seconds=min(seconds, 10)),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(seconds)),
        )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop scheduling; wait for a running tick to end."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
