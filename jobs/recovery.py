"""The recovery sweep: carries on the work a process left when it died.

A process may die between any two statements (a deploy, `kill -9`, the machine). What
must follow a commit is found again here, once its lease ran out (`WORK_LEASE_SECONDS`):

- jobs left `pending` (a REST launch, answered 201, plans here) or half planned,
- cards left `approved` or `executing` that never reached the outbox, or whose sent
  email was never recorded on the card (`Recovery.recover_cards`),
- running jobs whose last task finished without finishing the job,
- running tasks of jobs that ended meanwhile.

Tasks claimed by a dead worker need no sweep: their lease runs out and the next claim
takes them. A round takes the periodic lock (an advisory lock on PostgreSQL, a lease row on
SQLite), so one process sweeps at a time. Every step is a compare-and-set, so a
second sweeper (or a live worker it races) never does anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from domain.outreach import Recovery
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME = "salesbot:recovery-sweep"


class RecoverySweep:
    """The sweep, run by the process's periodic scheduler (jobs/scheduler.py) every few
    seconds; `wake()` when a job waits to be planned (the scheduler runs it at once)."""

    NAME = "recovery-sweep"

    def __init__(
        self,
        recovery: Recovery,
        session_factory: SessionFactory,
        *,
        on_found: Callable[[], None] | None = None,
    ) -> None:
        self._recovery = recovery
        self._sessions = session_factory
        self._on_found = on_found
        self._idle_after = 0
        #: Runs the sweep soon; the composition root points it at the scheduler.
        self.wake: Callable[[], None] = lambda: None

    def run_once(self) -> int:
        """Sweep once; return how many jobs and cards were carried on (0: nothing left)."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                return 0
            found = self._step("plan", self._recovery.plan_unplanned)
            found += self._step("cards", self._recovery.recover_cards)
            found += self._step("orphaned tasks", self._recovery.cancel_orphaned_tasks)
            self._step("idle jobs", self._finish_idle_jobs)
        if found and self._on_found is not None:
            self._on_found()
        return found

    def _finish_idle_jobs(self) -> int:
        looked = self._recovery.finish_idle_jobs(after_id=self._idle_after)
        # Go round the running jobs a page at a time, so none waits behind the others.
        self._idle_after = looked[-1] if looked else 0
        return 0

    def _step(self, name: str, step: Callable[[], int]) -> int:
        """Run one step; a failure is logged and the other steps still run."""
        try:
            return step()
        except Exception:  # noqa: BLE001 - e.g. one bad job; retried at the next round
            log.exception("recovery sweep step failed", extra={"step": name})
            return 0

    def plan_pending(self) -> int:
        """Plan the jobs waiting for it (tests and benches, instead of the thread)."""
        return self._recovery.plan_unplanned()
