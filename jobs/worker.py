"""The task worker: claims pending job tasks and runs them, in background threads.

Replicas share the queue: claims use SKIP LOCKED on PostgreSQL, so a task runs once.
A claim holds its tasks under a lease, renewed while the worker lives (a slow batch keeps
its tasks): a task whose worker died is claimed again when the lease runs out, and one
that keeps taking its workers down fails after a few claims.
Claims take turns between organizations (`TaskRepo.claim`). A stopping worker finishes
the task in hand and gives the rest of its claim back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Final

from domain import faults
from domain.clock import Clock
from domain.jobs import JobTaskView, TaskKind
from domain.outreach import Outreach
from jobs.loop import PolledWorker
from storage.db import is_connection_lost
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

DRAFT_KINDS = frozenset({TaskKind.DRAFT_EMAIL, TaskKind.FOLLOW_UP})

# A task claimed again this many times after its lease ran out fails instead: it may be
# what stops its workers (a poison task), and the others must go on.
MAX_RECLAIMS: Final = 5


class TaskWorker(PolledWorker):
    """Runs job tasks: `wake()` after adding work; `run_until_idle()` in tests and benches."""

    def __init__(
        self,
        outreach: Outreach,
        uow: Callable[[], UnitOfWork],
        clock: Clock,
        *,
        threads: int = 2,
        claim_size: int = 100,
        poll_seconds: float = 5.0,
        lease: timedelta = timedelta(minutes=5),
        kinds: Sequence[TaskKind] | None = None,
        exclude_kinds: Sequence[TaskKind] | None = None,
        name: str = "task-worker",
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._outreach = outreach
        self._uow = uow
        self._clock = clock
        self._claim_size = claim_size
        self._lease = lease
        self._kinds = kinds
        self._exclude = exclude_kinds
        self._on_progress = on_progress
        self._name = name
        # Claims in hand, (task id, retry_count): the keeper renews their lease.
        self._held: dict[int, int] = {}
        self._held_lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self._poll_with(threads=threads, poll_seconds=poll_seconds, name=name)

    def start(self) -> None:
        """Start the threads and the one that renews the leases of the tasks in hand."""
        super().start()
        if self._keeper is None:
            self._keeper_stop.clear()
            self._keeper = threading.Thread(
                target=self._keep_leases, name=f"{self._name}-leases", daemon=True
            )
            self._keeper.start()

    def stop(self) -> None:
        """Stop taking work; finish the tasks in hand, give back the rest of the claim."""
        super().stop()
        self._keeper_stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
            self._keeper = None

    def _keep_leases(self) -> None:
        every = max(0.05, self._lease.total_seconds() / 3)
        while not self._keeper_stop.wait(every):
            with self._held_lock:
                held = list(self._held.items())
            if not held:
                continue
            try:
                with self._uow() as uow:
                    uow.tasks.renew(held, lease_until=self._clock.now() + self._lease)
                    uow.commit()
            except Exception:  # noqa: BLE001 - e.g. the database away; try at the next beat
                log.exception("renewing task leases failed")

    def claim(self) -> list[JobTaskView]:
        """Claim a batch of due tasks of running jobs, under a lease."""
        now = self._clock.now()
        with self._uow() as uow:
            tasks = uow.tasks.claim(
                limit=self._claim_size,
                now=now,
                lease_until=now + self._lease,
                kinds=self._kinds,
                exclude_kinds=self._exclude,
            )
            uow.commit()
        if tasks:
            faults.reach("task.claimed")
        return tasks

    def _hold(self, tasks: list[JobTaskView]) -> None:
        with self._held_lock:
            self._held.update((t.id, t.retry_count) for t in tasks)

    def _let_go(self, tasks: list[JobTaskView]) -> None:
        with self._held_lock:
            for task in tasks:
                self._held.pop(task.id, None)

    def run_once(self) -> int:
        """Claim and run one batch; return how many tasks ran."""
        if self.stopping:
            return 0
        tasks = self.claim()
        self._hold(tasks)
        try:
            return self._run(tasks)
        finally:
            self._let_go(tasks)

    def _run(self, tasks: list[JobTaskView]) -> int:
        poisoned = [t for t in tasks if t.retry_count >= MAX_RECLAIMS]
        if poisoned:
            log.error(
                "tasks stopped their workers too often", extra={"tasks": [t.id for t in poisoned]}
            )
            self._outreach.tasks.fail_tasks(
                poisoned,
                reason=f"the worker stopped {MAX_RECLAIMS} times while running this task",
            )
        drafts: dict[int, list[JobTaskView]] = {}
        others: list[JobTaskView] = []
        for task in tasks:
            if task.retry_count >= MAX_RECLAIMS:
                continue
            if task.kind in DRAFT_KINDS:
                drafts.setdefault(task.org_id, []).append(task)
            else:
                others.append(task)
        for index, task in enumerate(others):
            if self.stopping:
                self._give_back(others[index:] + [t for b in drafts.values() for t in b])
                return len(tasks)
            try:
                self._outreach.tasks.run_task(task, org_id=task.org_id)
            except Exception as exc:  # noqa: BLE001 - one bad task must not stop the worker
                if self._retry_later([task], exc):
                    continue
                log.exception("task crashed", extra={"task_id": task.id, "job_id": task.job_id})
                self._outreach.tasks.fail_tasks(
                    [task], reason=f"internal error: {type(exc).__name__}"
                )
        batches = list(drafts.items())
        for index, (org_id, batch) in enumerate(batches):
            if self.stopping:
                self._give_back([t for _, b in batches[index:] for t in b])
                return len(tasks)
            try:
                self._outreach.drafting.run_draft_batch(batch, org_id=org_id)
            except Exception as exc:  # noqa: BLE001 - the batch fails, the worker goes on
                if self._retry_later(batch, exc):
                    continue
                log.exception("draft batch crashed", extra={"tasks": [t.id for t in batch]})
                self._outreach.tasks.fail_tasks(
                    batch, reason=f"internal error: {type(exc).__name__}"
                )
        if tasks and self._on_progress is not None:
            self._on_progress()
        return len(tasks)

    def _retry_later(self, tasks: list[JobTaskView], error: Exception) -> bool:
        """Leave tasks to their lease when the database connection failed under them (a
        killed backend, a failover): the task did nothing wrong, and failing it would lose
        its card. The next claim after the lease takes it again (its retry_count raised),
        so a database that keeps failing under it fails it as a poison task after
        MAX_RECLAIMS claims instead of retrying it for ever. Return False for any other
        error: the task fails with it."""
        if not is_connection_lost(error):
            return False
        self._let_go(tasks)  # no more lease renewals: the lease runs out
        log.warning(
            "the database connection failed under tasks; they run again after their lease",
            extra={"tasks": [t.id for t in tasks], "error": type(error).__name__},
        )
        return True

    def _give_back(self, tasks: list[JobTaskView]) -> None:
        """Return claimed tasks that never started to the queue, for the next worker."""
        if not tasks:
            return
        with self._uow() as uow:
            released = uow.tasks.release(tasks)
            uow.commit()
        log.info("stopping: claimed tasks given back", extra={"released": released})
