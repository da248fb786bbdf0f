"""The task worker: claims pending job tasks and runs them, in background threads.

Replicas share the queue: claims use SKIP LOCKED on PostgreSQL, so a task runs once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from domain.clock import Clock
from domain.jobs import JobTaskView, TaskKind
from domain.outreach import Outreach
from jobs.loop import PolledWorker
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

DRAFT_KINDS = frozenset({TaskKind.DRAFT_EMAIL, TaskKind.FOLLOW_UP})


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
        kinds: Sequence[TaskKind] | None = None,
        exclude_kinds: Sequence[TaskKind] | None = None,
        name: str = "task-worker",
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._outreach = outreach
        self._uow = uow
        self._clock = clock
        self._claim_size = claim_size
        self._kinds = kinds
        self._exclude = exclude_kinds
        self._on_progress = on_progress
        self._poll_with(threads=threads, poll_seconds=poll_seconds, name=name)

    def claim(self) -> list[JobTaskView]:
        """Claim a batch of pending tasks of running jobs."""
        with self._uow() as uow:
            tasks = uow.tasks.claim(
                limit=self._claim_size,
                now=self._clock.now(),
                kinds=self._kinds,
                exclude_kinds=self._exclude,
            )
            uow.commit()
        return tasks

    def run_once(self) -> int:
        """Claim and run one batch; return how many tasks ran."""
        tasks = self.claim()
        drafts: dict[int, list[JobTaskView]] = {}
        for task in tasks:
            if task.kind in DRAFT_KINDS:
                drafts.setdefault(task.org_id, []).append(task)
                continue
            try:
                self._outreach.run_task(task, org_id=task.org_id)
            except Exception as exc:  # noqa: BLE001 - one bad task must not stop the worker
                log.exception("task crashed", extra={"task_id": task.id, "job_id": task.job_id})
                self._outreach.fail_tasks([task], reason=f"internal error: {type(exc).__name__}")
        for org_id, batch in drafts.items():
            try:
                self._outreach.run_draft_batch(batch, org_id=org_id)
            except Exception as exc:  # noqa: BLE001 - the batch fails, the worker goes on
                log.exception("draft batch crashed", extra={"tasks": [t.id for t in batch]})
                self._outreach.fail_tasks(batch, reason=f"internal error: {type(exc).__name__}")
        if tasks and self._on_progress is not None:
            self._on_progress()
        return len(tasks)
