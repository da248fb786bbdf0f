"""The scheduler of periodic work: one APScheduler per process, every periodic job on it.

`salesbot worker` and the all-in-one `salesbot serve` each run one `PeriodicScheduler`
holding the cadence tick, the recovery sweep and the snooze sweep (the Gmail inbound
processor keeps its own catch-up, retry and watch-renewal jobs, on the same pattern).
APScheduler's job store lives in each process, so every process schedules every job; each
job takes its periodic lock (`storage.inbound.periodic_lock`: an advisory lock on
PostgreSQL, a lease row on SQLite) and claims its rows with SKIP LOCKED, so with several
processes each piece of work still runs once.

A run goes on while the job finds work (`run_once()` returning more than 0), up to
`max_rounds`, then waits for the next interval; `coalesce` folds the runs a stopped
process missed into one, and `wake(name)` runs a job now (a REST launch waking the
planner).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from integrations import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    """A named job: `run_once()` does one round and says how much it did (0: idle)."""

    name: str
    run_once: Callable[[], int]
    every: timedelta
    #: Rounds one run may chain while there is work (1: once an interval).
    max_rounds: int = 100


class PeriodicScheduler:
    """Runs periodic jobs in a background APScheduler (per process)."""

    def __init__(self) -> None:
        self._jobs: dict[str, PeriodicJob] = {}
        self._scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()
        # Jobs woken while they ran: their run goes round once more before it ends.
        self._woken: set[str] = set()

    def add(self, job: PeriodicJob) -> None:
        """Add a job (before `start()`)."""
        if job.name in self._jobs:
            raise ValueError(f"periodic job {job.name!r} is already scheduled")
        self._jobs[job.name] = job

    @property
    def names(self) -> list[str]:
        """The jobs scheduled, by name."""
        return sorted(self._jobs)

    def run(self, name: str) -> int:
        """Run a job now in this thread, as the scheduler does; return what it did."""
        job = self._jobs[name]
        total = 0
        rounds = 0
        while rounds < job.max_rounds:
            with self._lock:
                self._woken.discard(name)
            done = job.run_once()
            total += done
            rounds += 1
            with self._lock:
                again = name in self._woken
            if not done and not again:
                break
        return total

    def wake(self, name: str) -> None:
        """Run a job as soon as the scheduler can (it runs at once when not started)."""
        with self._lock:
            scheduler = self._scheduler
            # A run in progress may have looked already: it goes round once more.
            self._woken.add(name)
        if scheduler is None:
            return
        try:
            scheduler.modify_job(name, next_run_time=datetime.now(UTC))
        except Exception:  # noqa: BLE001 - e.g. shutting down: the next interval runs it
            log.debug("could not wake a periodic job", extra={"job": name}, exc_info=True)

    def _logged(self, name: str) -> Callable[[], None]:
        def run() -> None:
            self._measure_lag(name)
            try:
                self.run(name)
            except Exception:  # noqa: BLE001 - a failed run is logged; the next one runs
                metrics.PERIODIC_RUNS.labels(name, "failed").inc()
                log.exception("periodic job failed", extra={"job": name})
                return
            metrics.PERIODIC_RUNS.labels(name, "ok").inc()
            metrics.PERIODIC_LAST_SUCCESS.labels(name).set(time.time())

        return run

    def _measure_lag(self, name: str) -> None:
        """Observe how late this run started after the time it was due.

        When APScheduler hands a run to its threads it has already moved the job's next run
        time one interval past the time this run was due (a wake-up makes it due now), so
        the due time is that next run time less one interval.
        """
        scheduler = self._scheduler
        job = scheduler.get_job(name) if scheduler is not None else None
        next_run = getattr(job, "next_run_time", None)
        if next_run is None:
            return
        due = next_run - self._jobs[name].every
        lag = (datetime.now(UTC) - due).total_seconds()
        metrics.PERIODIC_LAG.labels(name).observe(max(lag, 0.0))

    def start(self) -> None:
        """Schedule every job: the first run soon, then one every interval."""
        with self._lock:
            if self._scheduler is not None:
                return
            scheduler = BackgroundScheduler(timezone=UTC)
            now = datetime.now(UTC)
            for job in self._jobs.values():
                seconds = job.every.total_seconds()
                scheduler.add_job(
                    self._logged(job.name),
                    IntervalTrigger(seconds=seconds, timezone=UTC),
                    id=job.name,
                    name=job.name,
                    next_run_time=now + timedelta(seconds=min(seconds, 1.0)),
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=max(1, int(seconds)),
                )
            scheduler.start()
            self._scheduler = scheduler

    def stop(self) -> None:
        """Stop scheduling; wait for the runs in progress to end."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)
