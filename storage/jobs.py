"""Repositories of jobs, their tasks (the work queue) and their enrollments."""

from __future__ import annotations

import builtins
import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, or_, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.cards import CardState
from domain.enrollments import (
    DEFER_KINDS,
    OTHER_DEFER_KIND,
    EnrollmentGroup,
    EnrollmentRow,
)
from domain.errors import NotFound
from domain.jobs import (
    INBOX_JOB_NAME,
    JOB_METRICS,
    EnrollmentStatus,
    Job,
    JobKind,
    JobStatus,
    JobTaskView,
    TaskKind,
    TaskStatus,
)
from storage import models as m
from storage.sql import chunks, clip, org_row, rowcount
from storage.types import JsonType

# The lease of a claim that names none (tests, one-off callers); workers pass their own.
DEFAULT_TASK_LEASE = timedelta(minutes=10)


class JobRepo:
    """Jobs of one organization, with atomic metric counters."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @staticmethod
    def _to_domain(row: m.Job) -> Job:
        return Job.model_validate(row, from_attributes=True)

    def add(
        self,
        org_id: int,
        *,
        name: str,
        description: str | None,
        params: dict[str, Any],
        owner_id: int | None,
        campaign_id: int | None,
        request_key: str | None = None,
    ) -> Job:
        """Store a pending job (`request_key`: the request that creates it, unique)."""
        row = m.Job(
            org_id=org_id,
            name=name,
            description=description,
            params=params,
            owner_id=owner_id,
            campaign_id=campaign_id,
            request_key=request_key,
            status=JobStatus.PENDING.value,
        )
        self._s.add(row)
        self._s.flush()
        return self._to_domain(row)

    def inbox_job_id(self, org_id: int, *, now: datetime) -> int:
        """Return the id of the organization's replies inbox job, creating it on first use.

        The inbox is stored running and planned (there is nothing to plan), so the planner
        and the recovery sweep leave it alone. Two first uses at once are one job: the
        partial unique index `ux_jobs_org_id_inbox` refuses the second insert, which is made
        in a savepoint so that only it is undone, and the winner's row is read instead; the
        caller's unit of work carries on.
        """
        found = self._inbox_id(org_id)
        if found is not None:
            return found
        try:
            with self._s.begin_nested():
                return int(
                    self._s.execute(
                        insert(m.Job)
                        .values(
                            org_id=org_id,
                            kind=JobKind.INBOX.value,
                            name=INBOX_JOB_NAME,
                            description="Reply cards that answer no campaign job.",
                            params={},
                            status=JobStatus.RUNNING.value,
                            started_at=now,
                            planned_at=now,
                            last_run_at=now,
                        )
                        .returning(m.Job.id)
                    ).scalar_one()
                )
        except IntegrityError:
            # Another transaction created it first (its row is committed: the insert
            # waited for it): read theirs. Any other refusal has no row to read.
            found = self._inbox_id(org_id)
            if found is None:
                raise
            return found

    def _inbox_id(self, org_id: int) -> int | None:
        return self._s.scalar(
            select(m.Job.id).where(m.Job.org_id == org_id, m.Job.kind == JobKind.INBOX.value)
        )

    def find_by_request_key(self, org_id: int, request_key: str) -> Job | None:
        """Return the job a request created, if it ran before."""
        row = self._s.scalars(
            select(m.Job).where(m.Job.org_id == org_id, m.Job.request_key == request_key)
        ).one_or_none()
        return None if row is None else self._to_domain(row)

    def get(self, org_id: int, job_id: int) -> Job:
        """Return a job or raise NotFound."""
        # populate_existing: the row as the database has it now, even when this session
        # already holds it and a Core UPDATE (counters, compare-and-set) changed it since.
        row = org_row(self._s, m.Job, org_id, job_id, what="job", populate_existing=True)
        return self._to_domain(row)

    def lock_status(self, org_id: int, job_id: int) -> JobStatus:
        """Read a job's status and hold its row until the transaction ends.

        A writer that must not add work to a job being cancelled reads the status with
        this first; the cancellation's status change waits for it, or it sees the change.
        """
        query = select(m.Job.status).where(m.Job.org_id == org_id, m.Job.id == job_id)
        if self._s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        status = self._s.scalar(query)
        if status is None:
            raise NotFound(f"job {job_id} not found")
        return JobStatus(status)

    def update_details(
        self,
        org_id: int,
        job_id: int,
        *,
        expected: Iterable[JobStatus],
        name: str | None = None,
        description: str | None = None,
        clear_description: bool = False,
        params: dict[str, Any] | None = None,
    ) -> bool:
        """Change a job's name, description or params if its status is one of `expected`
        (compare-and-set); the fields left None are kept."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if description is not None or clear_description:
            values["description"] = description
        if params is not None:
            values["params"] = params
        where = (
            m.Job.org_id == org_id,
            m.Job.id == job_id,
            m.Job.status.in_([s.value for s in expected]),
        )
        if not values:
            # Nothing to change: still tell whether the job is in an expected status.
            return self._s.scalar(select(m.Job.id).where(*where)) is not None
        result = self._s.execute(update(m.Job).where(*where).values(**values))
        return rowcount(result) > 0

    def list(
        self,
        org_id: int,
        *,
        status: str | None = None,
        campaign_id: int | None = None,
        kind: JobKind | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Return jobs (of one kind, if given), newest first."""
        query = select(m.Job).where(m.Job.org_id == org_id)
        if status:
            query = query.where(m.Job.status == status)
        if kind is not None:
            query = query.where(m.Job.kind == kind.value)
        if campaign_id is not None:
            query = query.where(m.Job.campaign_id == campaign_id)
        return [
            self._to_domain(r)
            for r in self._s.scalars(query.order_by(m.Job.id.desc()).limit(limit))
        ]

    def set_status(
        self,
        org_id: int,
        job_id: int,
        to: JobStatus,
        *,
        expected: Iterable[JobStatus],
        now: datetime,
        last_error: str | None = None,
        cancelled_by: int | None = None,
    ) -> bool:
        """Move a job's status if it is still in one of `expected` (compare-and-set).

        `last_error` says why (a failed job); `cancelled_by` who cancelled it.
        """
        values: dict[str, Any] = {"status": to.value, "last_run_at": now}
        if last_error is not None:
            values["last_error"] = clip(last_error)
        if cancelled_by is not None:
            values["cancelled_by"] = cancelled_by
        if to == JobStatus.RUNNING:
            values["started_at"] = func.coalesce(m.Job.started_at, now)
        if to in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            values["finished_at"] = now
        query = update(m.Job).where(
            m.Job.org_id == org_id,
            m.Job.id == job_id,
            m.Job.status.in_([s.value for s in expected]),
        )
        if to == JobStatus.SUCCEEDED:
            # Not while planning goes on: the drafts of a first chunk can all be done
            # before the next chunk is planned (or while a dead planner's lease runs out).
            query = query.where(m.Job.planned_at.is_not(None))
        result = self._s.execute(query.values(**values))
        return rowcount(result) > 0

    def claim_planning(
        self, org_id: int, job_id: int, *, now: datetime, lease_until: datetime
    ) -> bool:
        """Take the job's planning until `lease_until`, unless it is planned or another plans it."""
        result = self._s.execute(
            update(m.Job)
            .where(
                m.Job.org_id == org_id,
                m.Job.id == job_id,
                m.Job.planned_at.is_(None),
                m.Job.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]),
                or_(m.Job.plan_lease_until.is_(None), m.Job.plan_lease_until < now),
            )
            .values(plan_lease_until=lease_until)
        )
        return rowcount(result) > 0

    def extend_planning(self, job_id: int, *, lease_until: datetime) -> None:
        """Keep planning a long audience: push the planning lease forward."""
        self._s.execute(
            update(m.Job)
            .where(m.Job.id == job_id, m.Job.planned_at.is_(None))
            .values(plan_lease_until=lease_until)
        )

    def mark_planned(self, job_id: int, *, now: datetime) -> None:
        """Record that every step-0 task of the job exists."""
        self._s.execute(
            update(m.Job)
            .where(m.Job.id == job_id)
            .values(planned_at=func.coalesce(m.Job.planned_at, now), plan_lease_until=None)
        )

    def unplanned(self, *, now: datetime, limit: int) -> builtins.list[tuple[int, int]]:
        """Return (org id, job id) of jobs to plan: pending or half planned, with no planner."""
        rows = self._s.execute(
            select(m.Job.org_id, m.Job.id)
            .where(
                m.Job.planned_at.is_(None),
                m.Job.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]),
                or_(m.Job.plan_lease_until.is_(None), m.Job.plan_lease_until < now),
            )
            .order_by(m.Job.id)
            .limit(limit)
        )
        return [(org_id, job_id) for org_id, job_id in rows]

    def idle_running(self, *, after_id: int, limit: int) -> builtins.list[tuple[int, int]]:
        """Return (org id, job id) of planned running campaign jobs without an open task,
        by id (the replies inbox never finishes)."""
        t = m.JobTask
        open_task = exists().where(
            t.job_id == m.Job.id,
            t.status.in_([TaskStatus.PENDING.value, TaskStatus.RUNNING.value]),
        )
        rows = self._s.execute(
            select(m.Job.org_id, m.Job.id)
            .where(
                m.Job.status == JobStatus.RUNNING.value,
                m.Job.kind != JobKind.INBOX.value,
                m.Job.planned_at.is_not(None),
                m.Job.id > after_id,
                ~open_task,
            )
            .order_by(m.Job.id)
            .limit(limit)
        )
        return [(org_id, job_id) for org_id, job_id in rows]

    def bump(self, job_id: int, **deltas: int) -> None:
        """Add to a job's metric counters atomically (no read-modify-write)."""
        unknown = set(deltas) - set(JOB_METRICS)
        if unknown:
            raise ValueError(f"unknown job metrics: {', '.join(sorted(unknown))}")
        if not deltas:
            return
        columns = {name: getattr(m.Job, name) + delta for name, delta in deltas.items() if delta}
        if columns:
            self._s.execute(update(m.Job).where(m.Job.id == job_id).values(**columns))

    def note_error(self, job_id: int, reason: str, *, count: int = 1) -> None:
        """Count failures on a job and keep the reason as the job's latest error."""
        self._s.execute(
            update(m.Job)
            .where(m.Job.id == job_id)
            .values(errors_count=m.Job.errors_count + count, last_error=clip(reason))
        )

    def clear_error(self, job_id: int, *, starting: str) -> None:
        """Forget the job's latest error if it starts with `starting` (it was put right since:
        the card it names went out on a retry); the failure stays counted in errors_count."""
        self._s.execute(
            update(m.Job)
            .where(m.Job.id == job_id, m.Job.last_error.startswith(starting, autoescape=True))
            .values(last_error=None)
        )

    def recount(self, job_id: int) -> dict[str, int]:
        """Count a job's metrics from its tasks, cards and sends (to check the counters)."""
        t, c = m.JobTask, m.Card
        task_counts = dict(
            self._s.execute(
                select(t.status, func.count())
                .where(
                    t.job_id == job_id,
                    t.kind.not_in([TaskKind.POST_CARD.value, TaskKind.DRAFT_REPLY.value]),
                )
                .group_by(t.status)
            ).all()
        )
        card_created = self._s.scalar(select(func.count()).where(c.job_id == job_id)) or 0
        approved_states = [
            CardState.APPROVED.value,
            CardState.EXECUTING.value,
            CardState.DONE.value,
        ]
        card_approved = (
            self._s.scalar(
                select(func.count()).where(
                    c.job_id == job_id,
                    (c.state.in_(approved_states)) | (c.approved_at.is_not(None)),
                )
            )
            or 0
        )
        card_done = (
            self._s.scalar(
                select(func.count()).where(c.job_id == job_id, c.state == CardState.DONE.value)
            )
            or 0
        )
        sent = (
            self._s.scalar(
                select(func.count()).where(
                    m.EmailSend.job_id == job_id, m.EmailSend.status == "sent"
                )
            )
            or 0
        )
        return {
            "total_tasks": sum(task_counts.values()),
            "completed_tasks": task_counts.get(TaskStatus.SUCCEEDED.value, 0),
            "failed_tasks": task_counts.get(TaskStatus.FAILED.value, 0),
            "cards_created": card_created,
            "cards_approved": card_approved,
            "cards_executed": card_done,
            "emails_sent": sent,
        }


_STOPPED_JOB_STATES = (JobStatus.CANCELLED.value, JobStatus.FAILED.value)
# Jobs whose pending post_card tasks still run: stopped ones (withdrawn cards) and finished
# ones (reply cards made after the last email).
_POSTING_JOB_STATES = (*_STOPPED_JOB_STATES, JobStatus.SUCCEEDED.value)


class TaskRepo:
    """Job tasks; pending tasks are the work queue, claimed without double-running."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @staticmethod
    def _to_domain(row: m.JobTask) -> JobTaskView:
        return JobTaskView.model_validate(row, from_attributes=True)

    def add_many(self, org_id: int, job_id: int, rows: Sequence[dict[str, Any]]) -> int:
        """Insert tasks (dicts of kind, step, batch, contact_id, input), a chunk a statement."""
        payload = [
            {
                "org_id": org_id,
                "job_id": job_id,
                "status": TaskStatus.PENDING.value,
                "step": r.get("step", 0),
                "batch": r.get("batch", 0),
                "kind": r["kind"],
                "contact_id": r.get("contact_id"),
                "input": r.get("input", {}),
                "output": {},
                "retry_count": 0,
            }
            for r in rows
        ]
        if payload:
            # A plain executemany: one statement text, which psycopg prepares once and
            # sends in pipeline mode. With RETURNING, "insertmanyvalues" built a multi-row
            # VALUES of a new length per call, and parsing those on the client cost more
            # than the inserts (bench/cadence_tick.py: 1.3 s of a 10,000-task tick).
            self._s.execute(insert(m.JobTask), payload)
        return len(payload)

    def list_for_job(
        self, org_id: int, job_id: int, *, limit: int = 500, offset: int = 0
    ) -> list[JobTaskView]:
        """Return a job's tasks in creation order."""
        query = (
            select(m.JobTask)
            .where(m.JobTask.org_id == org_id, m.JobTask.job_id == job_id)
            .order_by(m.JobTask.id)
            .limit(limit)
            .offset(offset)
        )
        return [self._to_domain(r) for r in self._s.scalars(query)]

    def claim(
        self,
        *,
        limit: int,
        now: datetime,
        lease_until: datetime | None = None,
        kinds: Sequence[TaskKind] | None = None,
        exclude_kinds: Sequence[TaskKind] | None = None,
    ) -> list[JobTaskView]:
        """Claim due tasks of running jobs under a lease, fairly across organizations.

        Due: pending, or running with an expired lease (its worker died); a task claimed
        again has its `retry_count` raised, so the claim it had before cannot finish it.
        Organizations take turns: the ones with the fewest tasks running go first and
        each gets an equal share of the claim (a share one leaves unused goes to the
        others), so one organization's long queue or slow tasks cannot starve another's.
        On PostgreSQL rows are locked with SKIP LOCKED so replicas claim disjoint sets;
        on SQLite the writer lock serialises claims, and the UPDATE re-checks each row.
        """
        lease_until = lease_until or now + DEFAULT_TASK_LEASE
        t = m.JobTask
        due = or_(
            t.status == TaskStatus.PENDING.value,
            and_(t.status == TaskStatus.RUNNING.value, t.lease_until < now),
        )
        kind_filter: list[Any] = []
        if kinds:
            kind_filter.append(t.kind.in_([k.value for k in kinds]))
        if exclude_kinds:
            kind_filter.append(t.kind.not_in([k.value for k in exclude_kinds]))
        # A stopped job's withdrawn cards still have their messages updated, and a finished
        # job's reply cards (a contact answered its last email) are drafted and posted.
        job_ok = or_(
            m.Job.status == JobStatus.RUNNING.value,
            and_(
                m.Job.status.in_(_POSTING_JOB_STATES),
                t.kind == TaskKind.POST_CARD.value,
                t.status == TaskStatus.PENDING.value,
            ),
            and_(t.kind == TaskKind.DRAFT_REPLY.value, t.status == TaskStatus.PENDING.value),
        )
        orgs = self._orgs_by_load(now=now, kind_filter=kind_filter)
        postgres = self._s.get_bind().dialect.name == "postgresql"
        ids: list[int] = []
        after: dict[int, int] = {}  # per organization, the last id taken (keyset)
        remaining = limit
        while remaining > 0 and orgs:
            share = -(-remaining // len(orgs))
            more: list[int] = []
            for org_id in orgs:
                want = min(share, remaining)
                if want <= 0:
                    break
                query = (
                    select(t.id)
                    .join(m.Job, m.Job.id == t.job_id)
                    .where(t.org_id == org_id, job_ok, due)
                    .where(t.id > after.get(org_id, 0), *kind_filter)
                    .order_by(t.id)
                    .limit(want)
                )
                if postgres:
                    query = query.with_for_update(of=t, skip_locked=True)
                got = list(self._s.scalars(query))
                if got:
                    after[org_id] = got[-1]
                ids.extend(got)
                remaining -= len(got)
                if len(got) == want:
                    more.append(org_id)
            orgs = more
        if not ids:
            return []
        claimed = list(
            self._s.scalars(
                update(t)
                .where(t.id.in_(ids), due)
                .values(
                    status=TaskStatus.RUNNING.value,
                    started_at=now,
                    claimed_at=now,
                    lease_until=lease_until,
                    retry_count=t.retry_count
                    + case((t.status == TaskStatus.RUNNING.value, 1), else_=0),
                )
                .returning(t.id)
                .execution_options(synchronize_session=False)
            )
        )
        if not claimed:
            return []
        rows = self._s.scalars(
            select(t)
            .where(t.id.in_(claimed))
            .order_by(t.id)
            .execution_options(populate_existing=True)
        )
        return [self._to_domain(r) for r in rows]

    def _orgs_by_load(self, *, now: datetime, kind_filter: list[Any]) -> list[int]:
        """Organizations with running jobs (or a stopped job's message updates to post),
        the ones with the fewest tasks in hand first."""
        t = m.JobTask
        # The replies inbox runs for ever: its organization counts only with work in it.
        running = select(m.Job.org_id).where(
            m.Job.status == JobStatus.RUNNING.value, m.Job.kind != JobKind.INBOX.value
        )
        inbox_work = (
            select(t.org_id)
            .join(m.Job, m.Job.id == t.job_id)
            .where(
                m.Job.kind == JobKind.INBOX.value,
                t.status.in_([TaskStatus.PENDING.value, TaskStatus.RUNNING.value]),
            )
        )
        stopped_updates = (
            select(t.org_id)
            .join(m.Job, m.Job.id == t.job_id)
            .where(
                or_(
                    and_(
                        m.Job.status.in_(_POSTING_JOB_STATES),
                        t.kind == TaskKind.POST_CARD.value,
                    ),
                    t.kind == TaskKind.DRAFT_REPLY.value,
                ),
                t.status == TaskStatus.PENDING.value,
            )
        )
        orgs = list(self._s.scalars(running.union(stopped_updates, inbox_work)))
        if len(orgs) < 2:
            return orgs
        load = dict(
            self._s.execute(
                select(t.org_id, func.count())
                .where(
                    t.org_id.in_(orgs),
                    t.status == TaskStatus.RUNNING.value,
                    t.lease_until >= now,
                    *kind_filter,
                )
                .group_by(t.org_id)
            ).all()
        )
        random.shuffle(orgs)  # ties take turns from one claim to the next
        return sorted(orgs, key=lambda org_id: load.get(org_id, 0))

    def lock_claimed(self, tasks: Sequence[JobTaskView]) -> set[int]:
        """Lock the tasks this claim still holds and return their ids.

        A task whose lease ran out and that another worker claimed since (its
        `retry_count` moved) is not ours any more: its work must not be written twice.
        """
        if not tasks:
            return set()
        t = m.JobTask
        query = select(t.id, t.retry_count).where(
            t.id.in_([task.id for task in tasks]), t.status == TaskStatus.RUNNING.value
        )
        if self._s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        held = dict(self._s.execute(query).all())
        return {task.id for task in tasks if held.get(task.id) == task.retry_count}

    def renew(self, held: Sequence[tuple[int, int]], *, lease_until: datetime) -> int:
        """Extend the lease of claims still held: (task id, its retry_count) pairs."""
        return self._update_held(held, lease_until=lease_until)

    def release(self, tasks: Sequence[JobTaskView]) -> int:
        """Give claimed tasks that never started back to the queue (a worker stopping)."""
        return self._update_held(
            [(task.id, task.retry_count) for task in tasks],
            status=TaskStatus.PENDING.value,
            started_at=None,
            claimed_at=None,
            lease_until=None,
        )

    def _update_held(self, held: Sequence[tuple[int, int]], **values: Any) -> int:
        """Update the tasks of claims still held ((task id, retry_count) pairs): a task
        claimed again since (its retry_count moved) is another worker's and is left."""
        t = m.JobTask
        by_claim: dict[int, list[int]] = {}
        for task_id, retry_count in held:
            by_claim.setdefault(retry_count, []).append(task_id)
        updated = 0
        for retry_count, ids in by_claim.items():
            result = self._s.execute(
                update(t)
                .where(
                    t.id.in_(ids),
                    t.status == TaskStatus.RUNNING.value,
                    t.retry_count == retry_count,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            updated += rowcount(result)
        return updated

    def cancel_orphaned(self, *, now: datetime) -> int:
        """Cancel running tasks whose lease ran out after their job ended (nothing runs them)."""
        t = m.JobTask
        ended = exists().where(
            m.Job.id == t.job_id,
            m.Job.status.in_(
                [JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value]
            ),
        )
        result = self._s.execute(
            update(t)
            .where(t.status == TaskStatus.RUNNING.value, t.lease_until < now, ended)
            .values(
                status=TaskStatus.CANCELLED.value,
                finished_at=now,
                error_message="its job ended while the worker running it had stopped",
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)

    def finish(
        self,
        task_id: int,
        status: TaskStatus,
        *,
        now: datetime,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Finish a running task; return False if it was not running any more."""
        values: dict[str, Any] = {
            "status": status.value,
            "finished_at": now,
            "error_message": error,
        }
        if output is not None:
            values["output"] = output
        result = self._s.execute(
            update(m.JobTask)
            .where(m.JobTask.id == task_id, m.JobTask.status == TaskStatus.RUNNING.value)
            .values(**values)
        )
        return rowcount(result) > 0

    def finish_many(
        self, results: Sequence[tuple[int, dict[str, Any]]], status: TaskStatus, *, now: datetime
    ) -> int:
        """Finish running tasks with their outputs in one statement; return how many."""
        done = 0
        for chunk in chunks(list(results)):
            outputs = case(
                {task_id: type_coerce(output, JsonType) for task_id, output in chunk},
                value=m.JobTask.id,
            )
            result = self._s.execute(
                update(m.JobTask)
                .where(
                    m.JobTask.id.in_([task_id for task_id, _ in chunk]),
                    m.JobTask.status == TaskStatus.RUNNING.value,
                )
                .values(status=status.value, finished_at=now, output=outputs)
                .execution_options(synchronize_session=False)
            )
            done += rowcount(result)
        return done

    def cancel_pending(self, org_id: int, job_id: int, *, now: datetime) -> int:
        """Cancel a job's pending tasks, except the drafts and posts of cards made from
        inbound mail (a contact still waits for an answer); return how many."""
        inbound_cards = select(m.Card.id).where(
            m.Card.org_id == org_id,
            m.Card.job_id == job_id,
            m.Card.inbound_email_id.is_not(None),
        )
        result = self._s.execute(
            update(m.JobTask)
            .where(
                m.JobTask.org_id == org_id,
                m.JobTask.job_id == job_id,
                m.JobTask.status == TaskStatus.PENDING.value,
                m.JobTask.kind != TaskKind.DRAFT_REPLY.value,
                ~and_(
                    m.JobTask.kind == TaskKind.POST_CARD.value,
                    m.JobTask.input["card_id"].as_integer().in_(inbound_cards),
                ),
            )
            .values(status=TaskStatus.CANCELLED.value, finished_at=now)
        )
        return rowcount(result)

    def batch_drafted(self, org_id: int, job_id: int, batch: int) -> bool:
        """Tell whether every draft task of a job's batch has finished."""
        found = self._s.scalar(
            select(m.JobTask.id)
            .where(
                m.JobTask.org_id == org_id,
                m.JobTask.job_id == job_id,
                m.JobTask.batch == batch,
                m.JobTask.kind.in_([TaskKind.DRAFT_EMAIL.value, TaskKind.FOLLOW_UP.value]),
                m.JobTask.status.in_([TaskStatus.PENDING.value, TaskStatus.RUNNING.value]),
            )
            .limit(1)
        )
        return found is None

    def next_batch(self, org_id: int, job_id: int) -> int:
        """The batch number after the job's last one (0 for a job without tasks)."""
        last = self._s.scalar(
            select(func.max(m.JobTask.batch)).where(
                m.JobTask.org_id == org_id, m.JobTask.job_id == job_id
            )
        )
        return 0 if last is None else int(last) + 1

    def has_open(self, org_id: int, job_id: int) -> bool:
        """Tell whether a job still has a pending or running task (an index probe)."""
        found = self._s.scalar(
            select(m.JobTask.id)
            .where(
                m.JobTask.org_id == org_id,
                m.JobTask.job_id == job_id,
                m.JobTask.status.in_([TaskStatus.PENDING.value, TaskStatus.RUNNING.value]),
            )
            .limit(1)
        )
        return found is not None


class EnrollmentRepo:
    """Contacts enrolled in a job's cadence."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add_many(
        self,
        org_id: int,
        job_id: int,
        contact_ids: Sequence[int],
        *,
        next_due_at: datetime | None,
        step_started_at: datetime | None = None,
    ) -> dict[int, int]:
        """Enroll contacts not yet enrolled in the job; return contact id → new enrollment id.

        `step_started_at`: step 0 is in flight from then (its tasks are made with it).

        Contacts already enrolled (a re-run of planning) are left out of the result, so
        they get no second set of tasks.
        """
        at = step_started_at or next_due_at
        values = [
            {
                "org_id": org_id,
                "job_id": job_id,
                "contact_id": cid,
                "step": 0,
                "status": EnrollmentStatus.ACTIVE.value,
                "next_due_at": next_due_at,
                "step_started_at": step_started_at,
                # Enrolled at the use case's time (its clock), which step 0 counts from.
                **({"created_at": at, "updated_at": at} if at is not None else {}),
            }
            for cid in contact_ids
        ]
        dialect = self._s.get_bind().dialect.name
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        if not values:
            return {}
        stmt = (
            dialect_insert(m.Enrollment)
            .on_conflict_do_nothing(index_elements=["job_id", "contact_id"])
            .returning(m.Enrollment.contact_id, m.Enrollment.id)
        )
        return {cid: eid for cid, eid in self._s.execute(stmt, values)}

    def count(self, job_id: int) -> int:
        """Count a job's enrollments."""
        return self._s.scalar(select(func.count()).where(m.Enrollment.job_id == job_id)) or 0

    def stop_for_job(self, org_id: int, job_id: int, *, reason: str, now: datetime) -> int:
        """Stop every active or paused enrollment of a job."""
        result = self._s.execute(
            update(m.Enrollment)
            .where(
                m.Enrollment.org_id == org_id,
                m.Enrollment.job_id == job_id,
                m.Enrollment.status.in_(
                    [EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value]
                ),
            )
            .values(status=EnrollmentStatus.STOPPED.value, stop_reason=reason, updated_at=now)
        )
        return rowcount(result)

    def set_thread(self, enrollment_id: int, thread_id: str) -> None:
        """Remember the Gmail thread of an enrollment's emails."""
        self._s.execute(
            update(m.Enrollment)
            .where(m.Enrollment.id == enrollment_id, m.Enrollment.gmail_thread_id.is_(None))
            .values(gmail_thread_id=thread_id)
        )

    def list_for_job(
        self,
        org_id: int,
        job_id: int,
        *,
        status: EnrollmentStatus | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> builtins.list[EnrollmentRow]:
        """Return a job's enrollments with their contacts, in id order, after the id
        `after` (a page at a time), of one status if given."""
        en, c = m.Enrollment, m.Contact
        query = (
            select(
                en.id,
                en.contact_id,
                c.email,
                c.first_name,
                c.last_name,
                en.status,
                en.step,
                en.next_due_at,
                en.last_step_at,
                en.stop_reason,
                en.defer_reason,
                en.time_zone,
                en.created_at.label("enrolled_at"),
            )
            .join(c, and_(c.id == en.contact_id, c.org_id == en.org_id))
            .where(en.org_id == org_id, en.job_id == job_id)
        )
        if status is not None:
            query = query.where(en.status == status.value)
        if after is not None:
            query = query.where(en.id > after)
        rows = self._s.execute(query.order_by(en.id).limit(limit)).mappings()
        return [EnrollmentRow.model_validate(dict(row)) for row in rows]

    def summary_for_job(self, org_id: int, job_id: int) -> builtins.list[EnrollmentGroup]:
        """Count a job's enrollments by status, stop reason and kind of wait (one query).

        The kind of wait is the defer reason's shape (domain.enrollments.DEFER_KINDS), so
        reasons that differ only in their times and counts are counted together; it is
        computed in a subquery, grouped by the outer query (PostgreSQL cannot match a
        GROUP BY expression with bound LIKE patterns to the same expression in SELECT).
        """
        en = m.Enrollment
        kind = case(
            *[(en.defer_reason.like(pattern), label) for pattern, label in DEFER_KINDS],
            else_=OTHER_DEFER_KIND,
        )
        rows = (
            select(
                en.status.label("status"),
                en.stop_reason.label("reason"),
                case((en.defer_reason.is_(None), None), else_=kind).label("defer"),
                case(
                    (
                        and_(en.status == EnrollmentStatus.ACTIVE.value, en.next_due_at.is_(None)),
                        1,
                    ),
                    else_=0,
                ).label("running"),
                en.next_due_at.label("next_due_at"),
            )
            .where(en.job_id == job_id, en.org_id == org_id)
            .subquery()
        )
        query = select(
            rows.c.status,
            rows.c.reason,
            rows.c.defer,
            rows.c.running,
            func.count().label("n"),
            func.min(rows.c.next_due_at).label("next_due_at"),
        ).group_by(rows.c.status, rows.c.reason, rows.c.defer, rows.c.running)
        return [
            EnrollmentGroup(
                status=EnrollmentStatus(row.status),
                reason=row.reason,
                defer=row.defer,
                running=bool(row.running),
                count=int(row.n),
                next_due_at=row.next_due_at,
            )
            for row in self._s.execute(query)
        ]
