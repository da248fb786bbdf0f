"""An in-memory unit of work for the outreach use cases, and fakes of their other ports.

Each repository implements its Protocol in domain/ports.py over one `World` of plain
records. A unit of work keeps what it committed and undoes the rest when its block ends,
as the database would, so a use case that refuses half-way leaves nothing behind.
"""

from __future__ import annotations

import builtins
import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol

from domain.accounts import User
from domain.audience import AudienceCriteria, AudienceMember, AudienceSize
from domain.cadence import CadenceSettings, ContactFacts
from domain.campaigns import Campaign, CampaignFields
from domain.cards import (
    OPEN_STATES,
    UNDECIDED_STATES,
    Card,
    CardState,
    CardType,
    CardView,
    InFlightCard,
    Priority,
    SnoozedCard,
    states_that_can_become,
)
from domain.classification import Category
from domain.clock import FixedClock
from domain.contacts import ContactContext, EngagementTrend, UserRole
from domain.deps import Deps
from domain.engagement import (
    ContactEngagement,
    EngagementEvent,
    EngagementKey,
    NewEngagement,
    ScoredEvent,
)
from domain.enrollments import EnrollmentGroup, EnrollmentRow, defer_kind
from domain.errors import NotFound
from domain.intents import KnownPerson
from domain.jobs import (
    INBOX_JOB_NAME,
    JOB_METRICS,
    EnrollmentStatus,
    Job,
    JobKind,
    JobStatus,
    JobTaskView,
    TargetSelection,
    TaskKind,
    TaskStatus,
)
from domain.mail import OutgoingEmail, SendOutcome, SendStatus
from domain.outreach import Actor, Outreach
from domain.ports import OutreachUnitOfWork
from domain.replies import ReplyContext
from domain.reply_policy import ReplyPolicy
from domain.rules import Rule, RuleType
from domain.templates import EmailTemplate, EmailTemplateFields

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
ORG = 1
REP = 7  # the rep who launches jobs
OTHER_REP = 8
ADMIN = 9


@dataclass
class JobRecord:
    """A job with what storage keeps beside it."""

    job: Job
    request_key: str | None = None
    planned_at: datetime | None = None
    plan_lease_until: datetime | None = None


@dataclass
class Enrollment:
    org_id: int
    job_id: int
    contact_id: int
    status: str = "active"
    thread_id: str | None = None
    step: int = 0
    next_due_at: datetime | None = None
    last_step_at: datetime | None = None
    stop_reason: str | None = None
    defer_reason: str | None = None
    step_started_at: datetime | None = None


@dataclass
class World:
    """Everything the fake repositories hold; one unit of work at a time changes it."""

    campaigns: dict[tuple[int, int], Campaign] = field(default_factory=dict)
    templates: dict[tuple[int, int], EmailTemplate] = field(default_factory=dict)
    contacts: dict[tuple[int, int], ContactContext] = field(default_factory=dict)
    users: dict[tuple[int, int], User] = field(default_factory=dict)
    jobs: dict[int, JobRecord] = field(default_factory=dict)
    tasks: dict[int, JobTaskView] = field(default_factory=dict)
    enrollments: dict[int, Enrollment] = field(default_factory=dict)
    cards: dict[int, Card] = field(default_factory=dict)
    events: set[tuple[str, str]] = field(default_factory=set)
    engagement: EngagementStore = field(default_factory=lambda: EngagementStore())
    rules: dict[int, Rule] = field(default_factory=dict)
    #: The business context of inbound messages, by (org id, inbound email id).
    reply_contexts: dict[tuple[int, int], ReplyContext] = field(default_factory=dict)
    reply_policies: dict[int, ReplyPolicy] = field(default_factory=dict)
    #: Each organization's triage channel id.
    triage_channels: dict[int, str] = field(default_factory=dict)
    #: What contacts carry besides their context: tags, time zone, a pause (until, reason).
    contact_tags: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    contact_zones: dict[tuple[int, int], str] = field(default_factory=dict)
    contact_pauses: dict[tuple[int, int], tuple[datetime, str]] = field(default_factory=dict)
    campaign_names: dict[tuple[int, int], str] = field(default_factory=dict)
    client_names: dict[tuple[int, int], str] = field(default_factory=dict)
    next_id: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __deepcopy__(self, memo: dict[int, object]) -> World:
        # The id counter is shared, never rolled back: ids are not reused, as in a database.
        copied = World(next_id=self.next_id)
        for name in (
            "campaigns",
            "templates",
            "contacts",
            "users",
            "jobs",
            "tasks",
            "enrollments",
            "cards",
            "events",
            "engagement",
            "rules",
            "reply_contexts",
            "reply_policies",
            "triage_channels",
            "contact_tags",
            "contact_zones",
            "contact_pauses",
            "campaign_names",
            "client_names",
        ):
            setattr(copied, name, copy.deepcopy(getattr(self, name), memo))
        return copied

    def restore(self, saved: World) -> None:
        """Put back what a unit of work saw when it began (a rollback)."""
        for name, value in vars(saved).items():
            setattr(self, name, value)


class FakeCampaigns:
    def __init__(self, world: World, clock: FixedClock) -> None:
        self._w = world
        self._clock = clock

    def add(self, org_id: int, fields: CampaignFields, *, created_by: int | None) -> Campaign:
        campaign_id = next(self._w.next_id)
        now = self._clock.now()
        campaign = Campaign.model_validate(
            {
                **fields.model_dump(),
                "id": campaign_id,
                "created_by": created_by,
                "created_at": now,
                "updated_at": now,
            }
        )
        self._w.campaigns[(org_id, campaign_id)] = campaign
        return campaign

    def get(self, org_id: int, campaign_id: int) -> Campaign:
        found = self._w.campaigns.get((org_id, campaign_id))
        if found is None:
            raise NotFound(f"campaign {campaign_id} not found")
        return found

    def find_by_name(self, org_id: int, name: str) -> Campaign | None:
        return next(
            (
                c
                for (org, _), c in self._w.campaigns.items()
                if org == org_id and c.name.lower() == name.lower()
            ),
            None,
        )

    def list(self, org_id: int, *, status: str | None, limit: int, offset: int) -> list[Campaign]:
        found = [
            c
            for (org, _), c in sorted(self._w.campaigns.items(), reverse=True)
            if org == org_id and (status is None or c.status.value == status)
        ]
        return found[offset : offset + limit]

    def update(
        self, org_id: int, campaign_id: int, fields: CampaignFields, *, now: datetime
    ) -> Campaign:
        current = self.get(org_id, campaign_id)
        updated = Campaign.model_validate(
            {**current.model_dump(), **fields.model_dump(), "updated_at": now}
        )
        self._w.campaigns[(org_id, campaign_id)] = updated
        return updated


class FakeTemplates:
    def __init__(self, world: World, clock: FixedClock) -> None:
        self._w = world
        self._clock = clock

    def add(
        self,
        org_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        created_by: int | None,
    ) -> EmailTemplate:
        template_id = next(self._w.next_id)
        now = self._clock.now()
        template = EmailTemplate.model_validate(
            {
                **fields.model_dump(),
                "id": template_id,
                "variables": list(variables),
                "created_by": created_by,
                "created_at": now,
                "updated_at": now,
            }
        )
        self._w.templates[(org_id, template_id)] = template
        return template

    def get(self, org_id: int, template_id: int) -> EmailTemplate:
        found = self._w.templates.get((org_id, template_id))
        if found is None:
            raise NotFound(f"email template {template_id} not found")
        return found

    def list(self, org_id: int, *, category: str | None) -> list[EmailTemplate]:
        return sorted(
            (
                t
                for (org, _), t in self._w.templates.items()
                if org == org_id and (category is None or t.category.value == category)
            ),
            key=lambda t: t.name,
        )

    def update(
        self,
        org_id: int,
        template_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        now: datetime,
    ) -> EmailTemplate:
        current = self.get(org_id, template_id)
        updated = EmailTemplate.model_validate(
            {
                **current.model_dump(),
                **fields.model_dump(),
                "variables": list(variables),
                "updated_at": now,
            }
        )
        self._w.templates[(org_id, template_id)] = updated
        return updated

    def delete(self, org_id: int, template_id: int) -> None:
        self.get(org_id, template_id)
        del self._w.templates[(org_id, template_id)]

    def existing_ids(self, org_id: int, ids: Sequence[int]) -> set[int]:
        return {i for i in ids if (org_id, i) in self._w.templates}


class FakeAudience:
    """Every reachable contact of the organization, or the listed ones (no filters)."""

    def __init__(self, world: World) -> None:
        self._w = world

    def _reachable(self, org_id: int, target: TargetSelection | None) -> list[int]:
        listed = set(target.contact_ids) if target and target.contact_ids else None
        return sorted(
            c.contact_id
            for (org, _), c in self._w.contacts.items()
            if org == org_id and c.reachable and (listed is None or c.contact_id in listed)
        )

    def size(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime, sample_size: int
    ) -> AudienceSize:
        ids = self._reachable(org_id, None)
        sample = [
            AudienceMember(
                contact_id=c.contact_id,
                email=c.email,
                first_name=c.first_name,
                last_name=c.last_name,
                role_code=c.role_code,
                client_name=c.company_name,
                state=c.state,
                lead_score=None,
            )
            for c in (self._w.contacts[(org_id, i)] for i in ids[:sample_size])
        ]
        return AudienceSize(count=len(ids), sample=sample)

    def target_contact_ids(
        self, org_id: int, target: TargetSelection, *, now: datetime
    ) -> Iterator[list[int]]:
        ids = self._reachable(org_id, target)
        for start in range(0, len(ids), 2):  # small chunks, to plan more than one
            yield ids[start : start + 2]

    def target_count(self, org_id: int, target: TargetSelection, *, now: datetime) -> int:
        return len(self._reachable(org_id, target))


class FakeJobs:
    def __init__(self, world: World, clock: FixedClock) -> None:
        self._w = world
        self._clock = clock

    def _record(self, org_id: int, job_id: int) -> JobRecord:
        found = self._w.jobs.get(job_id)
        if found is None or found.job.org_id != org_id:
            raise NotFound(f"job {job_id} not found")
        return found

    def _change(self, job_id: int, **values: Any) -> None:
        record = self._w.jobs[job_id]
        record.job = record.job.model_copy(update=values)

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
        job = Job(
            id=next(self._w.next_id),
            org_id=org_id,
            owner_id=owner_id,
            campaign_id=campaign_id,
            name=name,
            description=description,
            status=JobStatus.PENDING,
            params=params,
            created_at=self._clock.now(),
            started_at=None,
            finished_at=None,
            last_run_at=None,
        )
        self._w.jobs[job.id] = JobRecord(job, request_key=request_key)
        return job

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
        record = self._record(org_id, job_id)
        if record.job.status not in set(expected):
            return False
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if description is not None or clear_description:
            values["description"] = description
        if params is not None:
            values["params"] = params
        self._change(job_id, **values)
        return True

    def inbox_job_id(self, org_id: int, *, now: datetime) -> int:
        for job_id, record in self._w.jobs.items():
            if record.job.org_id == org_id and record.job.kind == JobKind.INBOX:
                return job_id
        job = Job(
            id=next(self._w.next_id),
            org_id=org_id,
            owner_id=None,
            campaign_id=None,
            kind=JobKind.INBOX,
            name=INBOX_JOB_NAME,
            description=None,
            status=JobStatus.RUNNING,
            params={},
            created_at=now,
            started_at=now,
            finished_at=None,
            last_run_at=now,
        )
        self._w.jobs[job.id] = JobRecord(job, planned_at=now)
        return job.id

    def find_by_request_key(self, org_id: int, request_key: str) -> Job | None:
        return next(
            (
                r.job
                for r in self._w.jobs.values()
                if r.job.org_id == org_id and r.request_key == request_key
            ),
            None,
        )

    def get(self, org_id: int, job_id: int) -> Job:
        return self._record(org_id, job_id).job

    def lock_status(self, org_id: int, job_id: int) -> JobStatus:
        return self.get(org_id, job_id).status

    def list(
        self,
        org_id: int,
        *,
        status: str | None = None,
        campaign_id: int | None = None,
        kind: JobKind | None = None,
        limit: int = 50,
    ) -> builtins.list[Job]:
        found = [
            r.job
            for _, r in sorted(self._w.jobs.items(), reverse=True)
            if r.job.org_id == org_id
            and (status is None or r.job.status.value == status)
            and (campaign_id is None or r.job.campaign_id == campaign_id)
            and (kind is None or r.job.kind == kind)
        ]
        return found[:limit]

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
        record = self._record(org_id, job_id)
        if record.job.status not in set(expected):
            return False
        if to == JobStatus.SUCCEEDED and record.planned_at is None:
            return False
        values: dict[str, Any] = {"status": to, "last_run_at": now}
        if last_error is not None:
            values["last_error"] = last_error
        if cancelled_by is not None:
            values["cancelled_by"] = cancelled_by
        if to == JobStatus.RUNNING:
            values["started_at"] = record.job.started_at or now
        if to in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            values["finished_at"] = now
        self._change(job_id, **values)
        return True

    def claim_planning(
        self, org_id: int, job_id: int, *, now: datetime, lease_until: datetime
    ) -> bool:
        record = self._record(org_id, job_id)
        lease = record.plan_lease_until
        if (
            record.planned_at is not None
            or record.job.status not in (JobStatus.PENDING, JobStatus.RUNNING)
            or (lease is not None and lease >= now)
        ):
            return False
        record.plan_lease_until = lease_until
        return True

    def extend_planning(self, job_id: int, *, lease_until: datetime) -> None:
        if self._w.jobs[job_id].planned_at is None:
            self._w.jobs[job_id].plan_lease_until = lease_until

    def mark_planned(self, job_id: int, *, now: datetime) -> None:
        record = self._w.jobs[job_id]
        record.planned_at = record.planned_at or now
        record.plan_lease_until = None

    def unplanned(self, *, now: datetime, limit: int) -> builtins.list[tuple[int, int]]:
        return [
            (r.job.org_id, job_id)
            for job_id, r in sorted(self._w.jobs.items())
            if r.planned_at is None
            and r.job.status in (JobStatus.PENDING, JobStatus.RUNNING)
            and (r.plan_lease_until is None or r.plan_lease_until < now)
        ][:limit]

    def idle_running(self, *, after_id: int, limit: int) -> builtins.list[tuple[int, int]]:
        open_jobs = {
            t.job_id
            for t in self._w.tasks.values()
            if t.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
        }
        return [
            (r.job.org_id, job_id)
            for job_id, r in sorted(self._w.jobs.items())
            if r.job.status == JobStatus.RUNNING
            and r.job.kind != JobKind.INBOX
            and r.planned_at is not None
            and job_id > after_id
            and job_id not in open_jobs
        ][:limit]

    def bump(self, job_id: int, **deltas: int) -> None:
        unknown = set(deltas) - set(JOB_METRICS)
        if unknown:
            raise ValueError(f"unknown job metrics: {', '.join(sorted(unknown))}")
        job = self._w.jobs[job_id].job
        self._change(job_id, **{k: getattr(job, k) + v for k, v in deltas.items()})

    def note_error(self, job_id: int, reason: str, *, count: int = 1) -> None:
        job = self._w.jobs[job_id].job
        self._change(job_id, errors_count=job.errors_count + count, last_error=reason)

    def clear_error(self, job_id: int, *, starting: str) -> None:
        last = self._w.jobs[job_id].job.last_error
        if last is not None and last.startswith(starting):
            self._change(job_id, last_error=None)


class FakeTasks:
    def __init__(self, world: World, clock: FixedClock) -> None:
        self._w = world
        self._clock = clock

    def _change(self, task_id: int, **values: Any) -> None:
        self._w.tasks[task_id] = self._w.tasks[task_id].model_copy(update=values)

    def add_many(self, org_id: int, job_id: int, rows: Sequence[dict[str, Any]]) -> int:
        for row in rows:
            task_id = next(self._w.next_id)
            self._w.tasks[task_id] = JobTaskView(
                id=task_id,
                org_id=org_id,
                job_id=job_id,
                contact_id=row.get("contact_id"),
                step=row.get("step", 0),
                batch=row.get("batch", 0),
                kind=TaskKind(row["kind"]),
                status=TaskStatus.PENDING,
                input=row.get("input", {}),
                output={},
                created_at=self._clock.now(),
                started_at=None,
                finished_at=None,
                error_message=None,
                retry_count=0,
            )
        return len(rows)

    def lock_claimed(self, tasks: Sequence[JobTaskView]) -> set[int]:
        return {
            t.id
            for t in tasks
            if self._w.tasks[t.id].status == TaskStatus.RUNNING
            and self._w.tasks[t.id].retry_count == t.retry_count
        }

    def cancel_orphaned(self, *, now: datetime) -> int:
        ended = {
            job_id
            for job_id, r in self._w.jobs.items()
            if r.job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
        }
        orphans = [
            t.id
            for t in self._w.tasks.values()
            if t.status == TaskStatus.RUNNING and t.job_id in ended
        ]
        for task_id in orphans:
            self._change(task_id, status=TaskStatus.CANCELLED, finished_at=now)
        return len(orphans)

    def finish(
        self,
        task_id: int,
        status: TaskStatus,
        *,
        now: datetime,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        if self._w.tasks[task_id].status != TaskStatus.RUNNING:
            return False
        values: dict[str, Any] = {"status": status, "finished_at": now, "error_message": error}
        if output is not None:
            values["output"] = output
        self._change(task_id, **values)
        return True

    def finish_many(
        self, results: Sequence[tuple[int, dict[str, Any]]], status: TaskStatus, *, now: datetime
    ) -> int:
        return sum(self.finish(task_id, status, now=now, output=out) for task_id, out in results)

    def cancel_pending(self, org_id: int, job_id: int, *, now: datetime) -> int:
        pending = [
            t.id
            for t in self._w.tasks.values()
            if t.job_id == job_id
            and t.status == TaskStatus.PENDING
            and t.kind != TaskKind.DRAFT_REPLY
            and not (
                t.kind == TaskKind.POST_CARD
                and (card := self._w.cards.get(int(str(t.input.get("card_id", 0))))) is not None
                and card.inbound_email_id is not None
            )
        ]
        for task_id in pending:
            self._change(task_id, status=TaskStatus.CANCELLED, finished_at=now)
        return len(pending)

    def batch_drafted(self, org_id: int, job_id: int, batch: int) -> bool:
        return not any(
            t.job_id == job_id
            and t.batch == batch
            and t.kind in (TaskKind.DRAFT_EMAIL, TaskKind.FOLLOW_UP)
            and t.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
            for t in self._w.tasks.values()
        )

    def next_batch(self, org_id: int, job_id: int) -> int:
        batches = [t.batch for t in self._w.tasks.values() if t.job_id == job_id]
        return max(batches) + 1 if batches else 0

    def has_open(self, org_id: int, job_id: int) -> bool:
        return any(
            t.job_id == job_id and t.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
            for t in self._w.tasks.values()
        )


class FakeEnrollments:
    def __init__(self, world: World) -> None:
        self._w = world

    def add_many(
        self,
        org_id: int,
        job_id: int,
        contact_ids: Sequence[int],
        *,
        next_due_at: datetime | None,
        step_started_at: datetime | None = None,
    ) -> dict[int, int]:
        enrolled = {e.contact_id for e in self._w.enrollments.values() if e.job_id == job_id}
        added: dict[int, int] = {}
        for contact_id in contact_ids:
            if contact_id not in enrolled:
                added[contact_id] = next(self._w.next_id)
                self._w.enrollments[added[contact_id]] = Enrollment(
                    org_id,
                    job_id,
                    contact_id,
                    next_due_at=next_due_at,
                    step_started_at=step_started_at,
                )
        return added

    def count(self, job_id: int) -> int:
        return sum(e.job_id == job_id for e in self._w.enrollments.values())

    def stop_for_job(self, org_id: int, job_id: int, *, reason: str, now: datetime) -> int:
        stopped = 0
        for e in self._w.enrollments.values():
            if e.job_id == job_id and e.status in ("active", "paused"):
                e.status = "stopped"
                stopped += 1
        return stopped

    def set_thread(self, enrollment_id: int, thread_id: str) -> None:
        enrollment = self._w.enrollments[enrollment_id]
        enrollment.thread_id = enrollment.thread_id or thread_id

    def list_for_job(
        self,
        org_id: int,
        job_id: int,
        *,
        status: EnrollmentStatus | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> builtins.list[EnrollmentRow]:
        rows = []
        for enrollment_id, e in sorted(self._w.enrollments.items()):
            if e.org_id != org_id or e.job_id != job_id:
                continue
            if (status is not None and e.status != status) or (after and enrollment_id <= after):
                continue
            contact = self._w.contacts[(org_id, e.contact_id)]
            rows.append(
                EnrollmentRow(
                    id=enrollment_id,
                    contact_id=e.contact_id,
                    email=contact.email,
                    first_name=contact.first_name,
                    last_name=contact.last_name,
                    status=EnrollmentStatus(e.status),
                    step=e.step,
                    next_due_at=e.next_due_at,
                    last_step_at=e.last_step_at,
                    stop_reason=e.stop_reason,
                    defer_reason=e.defer_reason,
                    time_zone=None,
                    enrolled_at=NOW,
                )
            )
        return rows[:limit]

    def summary_for_job(self, org_id: int, job_id: int) -> builtins.list[EnrollmentGroup]:
        groups: dict[tuple[str, str | None, str | None, bool], EnrollmentGroup] = {}
        for e in self._w.enrollments.values():
            if e.org_id != org_id or e.job_id != job_id:
                continue
            running = e.status == "active" and e.next_due_at is None
            defer = defer_kind(e.defer_reason) if e.defer_reason else None
            key = (e.status, e.stop_reason, defer, running)
            group = groups.get(key)
            if group is None:
                group = groups[key] = EnrollmentGroup(
                    status=EnrollmentStatus(e.status),
                    reason=e.stop_reason,
                    defer=defer,
                    running=running,
                    count=0,
                )
            group.count += 1
            if e.next_due_at is not None and (
                group.next_due_at is None or e.next_due_at < group.next_due_at
            ):
                group.next_due_at = e.next_due_at
        return list(groups.values())


class FakeCadence:
    """The cadence rows of the world's enrollments (the tick itself is tested on both
    databases; these serve the use cases that end steps and finish jobs)."""

    def __init__(self, world: World) -> None:
        self._w = world
        self.stored_settings: dict[int, CadenceSettings] = {}

    def step_done(
        self, enrollment_id: int, *, step: int, at: datetime, final: bool = False
    ) -> bool:
        e = self._w.enrollments.get(enrollment_id)
        if e is None or e.step != step or e.status not in RUNNING_ENROLLMENTS:
            return False
        if e.step_started_at is None:
            return False
        e.step, e.last_step_at, e.defer_reason = step + 1, at, None
        e.step_started_at = None
        e.next_due_at = None if final else at
        if final:
            e.status = "completed"
        return True

    def stop(self, enrollment_id: int, *, reason: str, at: datetime) -> bool:
        e = self._w.enrollments.get(enrollment_id)
        if e is None or e.status not in RUNNING_ENROLLMENTS:
            return False
        e.status, e.stop_reason, e.next_due_at = "stopped", reason, None
        return True

    def defer(self, enrollment_id: int, *, step: int, until: datetime, reason: str) -> bool:
        e = self._w.enrollments.get(enrollment_id)
        if e is None or e.step != step or e.status != "active":
            return False
        e.next_due_at, e.defer_reason, e.step_started_at = until, reason, None
        return True

    def contact_facts(
        self, org_id: int, contact_ids: Sequence[int], *, now: datetime
    ) -> dict[int, ContactFacts]:
        """What the rules read of contacts: the world has no orders nor sends, so none
        stops or tires anyone (the rules themselves are tested on both databases)."""
        return {cid: ContactFacts(contact_id=cid, email=f"c{cid}@x.example") for cid in contact_ids}

    def enrollment_state(self, enrollment_id: int) -> tuple[str, str | None] | None:
        e = self._w.enrollments.get(enrollment_id)
        return (e.status, e.stop_reason) if e is not None else None

    def resume_job(self, org_id: int, job_id: int, *, now: datetime) -> int:
        resumed = 0
        for e in self._w.enrollments.values():
            if e.job_id == job_id and e.status == "paused" and e.stop_reason == "job paused":
                e.status, e.stop_reason = "active", None
                e.next_due_at = now if e.step_started_at is None else None
                resumed += 1
        return resumed

    def has_open(self, org_id: int, job_id: int) -> bool:
        return any(
            e.job_id == job_id
            and e.org_id == org_id
            and (
                (e.status == "active" and e.next_due_at is not None)
                or (e.status == "paused" and e.stop_reason == "job paused")
            )
            for e in self._w.enrollments.values()
        )

    def settings(self, org_id: int) -> CadenceSettings:
        return self.stored_settings.get(org_id, CadenceSettings())

    def save_settings(self, org_id: int, settings: CadenceSettings) -> None:
        self.stored_settings[org_id] = settings


RUNNING_ENROLLMENTS = ("active", "paused")


class FakeCards:
    def __init__(self, world: World, clock: FixedClock) -> None:
        self._w = world
        self._clock = clock

    def add(
        self,
        org_id: int,
        *,
        job_id: int | None,
        task_id: int | None,
        contact_id: int | None,
        client_id: int | None,
        type: CardType,
        state: CardState,
        priority: Priority,
        title: str,
        description: str | None,
        rationale: str | None,
        action_payload: dict[str, Any],
        enrollment_id: int | None = None,
    ) -> Card:
        now = self._clock.now()
        card = Card(
            id=next(self._w.next_id),
            org_id=org_id,
            type=type,
            state=state,
            priority=priority,
            title=title,
            created_at=now,
            updated_at=now,
            job_id=job_id,
            task_id=task_id,
            enrollment_id=enrollment_id,
            contact_id=contact_id,
            client_id=client_id,
            description=description,
            rationale=rationale,
            action_payload=action_payload,
        )
        self._w.cards[card.id] = card
        return card

    def unposted_reply_cards(self, org_id: int, *, limit: int) -> builtins.list[tuple[int, int]]:
        queued = {
            t.input.get("card_id")
            for t in self._w.tasks.values()
            if t.org_id == org_id and t.kind == "post_card" and t.status in ("pending", "running")
        }
        return [
            (c.id, c.job_id)
            for c in sorted(self._w.cards.values(), key=lambda c: c.id)
            if c.org_id == org_id
            and c.inbound_email_id is not None
            and c.job_id is not None
            and c.slack_message_ts is None
            and c.state in OPEN_STATES
            and c.state != CardState.SUGGESTED
            and c.id not in queued
        ][:limit]

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> list[int]:
        now = self._clock.now()
        ids = []
        names = set(Card.__dataclass_fields__)
        for row in rows:
            values = {k: v for k, v in row.items() if k in names}
            values["type"] = CardType(values["type"])
            values["state"] = CardState(values["state"])
            values["priority"] = Priority(values["priority"])
            card = Card(
                id=next(self._w.next_id),
                org_id=org_id,
                created_at=now,
                updated_at=now,
                **values,
            )
            self._w.cards[card.id] = card
            ids.append(card.id)
        return ids

    def get(self, org_id: int, card_id: int) -> Card:
        found = self._w.cards.get(card_id)
        if found is None or found.org_id != org_id:
            raise NotFound(f"card {card_id} not found")
        return found

    def compare_and_set(
        self,
        org_id: int,
        card_id: int,
        *,
        expected: Iterable[CardState],
        to: CardState,
        now: datetime,
        **changes: Any,
    ) -> bool:
        card = self.get(org_id, card_id)
        if card.state not in set(expected):
            return False
        self._w.cards[card_id] = replace(card, state=to, updated_at=now, **changes)
        return True

    def stale_in_flight(self, *, before: datetime, limit: int) -> list[InFlightCard]:
        # No outbox here: every card left approved or executing is the sweep's.
        return [
            InFlightCard(c.org_id, c.id, c.state, c.sends_email, None)
            for c in sorted(self._w.cards.values(), key=lambda c: (c.updated_at, c.id))
            if c.state in (CardState.APPROVED, CardState.EXECUTING) and c.updated_at < before
        ][:limit]

    def reset_unsent(self, org_id: int, card_id: int, *, before: datetime, now: datetime) -> bool:
        card = self.get(org_id, card_id)
        if card.state != CardState.EXECUTING or card.updated_at >= before:
            return False
        self._w.cards[card_id] = replace(card, state=CardState.APPROVED, updated_at=now)
        return True

    def update_fields(self, org_id: int, card_id: int, *, now: datetime, **changes: Any) -> None:
        if "state" in changes:
            raise ValueError("use compare_and_set to change a card's state")
        self._w.cards[card_id] = replace(self.get(org_id, card_id), updated_at=now, **changes)

    def set_message(self, card_id: int, *, channel: str, ts: str) -> None:
        card = self._w.cards[card_id]
        self._w.cards[card_id] = replace(card, slack_channel_id=channel, slack_message_ts=ts)

    def has_undecided(self, org_id: int, job_id: int) -> bool:
        return any(
            c.job_id == job_id and c.state in UNDECIDED_STATES for c in self._w.cards.values()
        )

    def withdraw_for_job(
        self, org_id: int, job_id: int, *, reason: str, now: datetime
    ) -> list[tuple[int, str | None]]:
        movable = states_that_can_become(CardState.WITHDRAWN)
        withdrawn = []
        for card in list(self._w.cards.values()):
            if card.job_id == job_id and card.inbound_email_id is None and card.state in movable:
                self._w.cards[card.id] = replace(
                    card, state=CardState.WITHDRAWN, updated_at=now, withdrawn_reason=reason
                )
                withdrawn.append((card.id, card.slack_message_ts))
        return sorted(withdrawn)

    def list_for_batch(
        self, org_id: int, job_id: int, batch: int, *, states: Sequence[CardState]
    ) -> list[Card]:
        return [
            c
            for c in sorted(self._w.cards.values(), key=lambda c: c.id)
            if c.job_id == job_id
            and c.task_id is not None
            and self._w.tasks[c.task_id].batch == batch
            and c.state in states
        ]

    def snooze(
        self,
        org_id: int,
        card_id: int,
        *,
        until: datetime,
        expected: Iterable[CardState],
        now: datetime,
        action_payload: dict[str, Any],
    ) -> bool:
        card = self.get(org_id, card_id)
        if card.state not in set(expected):
            return False
        self._w.cards[card_id] = replace(
            card, snoozed_until=until, updated_at=now, action_payload=action_payload
        )
        return True

    def unsnooze(self, org_id: int, card_id: int, *, now: datetime) -> bool:
        card = self.get(org_id, card_id)
        if card.snoozed_until is None:
            return False
        self._w.cards[card_id] = replace(card, snoozed_until=None, updated_at=now)
        return True

    def claim_due_snoozed(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[SnoozedCard]:
        due = sorted(
            (c for c in self._w.cards.values() if c.snoozed_until and c.snoozed_until <= now),
            key=lambda c: (c.snoozed_until, c.id),
        )[:limit]
        for card in due:
            self._w.cards[card.id] = replace(card, snoozed_until=lease_until)
        return [
            SnoozedCard(
                c.org_id, c.id, c.state, lease_until, c.slack_channel_id, c.slack_message_ts
            )
            for c in due
        ]

    def end_snooze(
        self, org_id: int, card_id: int, *, claimed_until: datetime, now: datetime
    ) -> bool:
        card = self.get(org_id, card_id)
        if card.snoozed_until != claimed_until:
            return False
        self._w.cards[card_id] = replace(card, snoozed_until=None, updated_at=now)
        return True


class FakeContexts:
    def __init__(self, world: World) -> None:
        self._w = world

    def contact_context(self, org_id: int, contact_id: int, *, now: datetime) -> ContactContext:
        found = self._w.contacts.get((org_id, contact_id))
        if found is None:
            raise NotFound(f"contact {contact_id} not found")
        return found

    def contact_contexts(
        self, org_id: int, contact_ids: list[int], *, now: datetime
    ) -> dict[int, ContactContext]:
        return {
            i: self._w.contacts[(org_id, i)] for i in contact_ids if (org_id, i) in self._w.contacts
        }

    def firm_name(self, org_id: int) -> str:
        return "Pinnacle Appraisals"

    def thread_to_continue(self, enrollment_id: int | None) -> str | None:
        found = self._w.enrollments.get(enrollment_id) if enrollment_id is not None else None
        return found.thread_id if found else None

    def touch_contacted(self, org_id: int, contact_id: int, *, at: datetime) -> None:
        contact = self._w.contacts[(org_id, contact_id)]
        self._w.contacts[(org_id, contact_id)] = replace(contact, last_contacted_at=at)

    def apply_profile_changes(
        self, org_id: int, contact_id: int, changes: dict[str, Any], *, at: datetime
    ) -> None:
        contact = self.contact_context(org_id, contact_id, now=at)
        if "title" in changes:
            self._w.contacts[(org_id, contact_id)] = replace(contact, title=changes["title"])


class FakeUsers:
    def __init__(self, world: World) -> None:
        self._w = world

    def find(self, org_id: int, user_id: int) -> User | None:
        return self._w.users.get((org_id, user_id))

    def find_by_email(self, org_id: int, email: str) -> User | None:
        return next(
            (u for u in self._w.users.values() if u.org_id == org_id and u.email == email), None
        )

    def find_by_slack_id(self, org_id: int, slack_user_id: str) -> User | None:
        return next(
            (
                u
                for u in self._w.users.values()
                if u.org_id == org_id and u.slack_user_id == slack_user_id
            ),
            None,
        )

    def has_admin(self, org_id: int) -> bool:
        return any(u.org_id == org_id and u.role == "admin" for u in self._w.users.values())

    def add(
        self,
        org_id: int,
        *,
        email: str,
        name: str | None,
        role: UserRole,
        slack_user_id: str | None,
    ) -> User:
        user = User(next(self._w.next_id), org_id, email, name, role.value, slack_user_id)
        self._w.users[(org_id, user.id)] = user
        return user

    def save(self, user: User) -> None:
        self._w.users[(user.org_id, user.id)] = user


class FakeOrgs:
    """The triage channel of each organization (domain.ports.TriageChannelRepository)."""

    def __init__(self, world: World) -> None:
        self._w = world

    def triage_channel(self, org_id: int) -> str | None:
        return self._w.triage_channels.get(org_id)

    def set_triage_channel(self, org_id: int, channel_id: str | None) -> None:
        if channel_id is None:
            self._w.triage_channels.pop(org_id, None)
        else:
            self._w.triage_channels[org_id] = channel_id


class FakeEvents:
    def __init__(self, world: World) -> None:
        self._w = world

    def claim(self, source: str, key: str, *, org_id: int | None = None) -> bool:
        if (source, key) in self._w.events:
            return False
        self._w.events.add((source, key))
        return True


@dataclass
class HistoryRow:
    """A row of `contact_engagement_history`."""

    id: int
    org_id: int
    contact_id: int
    event: str
    occurred_at: datetime
    sentiment: str | None
    score_delta: float
    score_after: float | None
    email_send_id: int | None
    inbound_email_id: int | None
    detail: dict[str, object]


@dataclass
class ClientRecord:
    last_ordered_at: datetime | None = None
    re_engaged_at: datetime | None = None


@dataclass
class EngagementStore:
    """The engagement columns of contacts and clients, and the history rows."""

    contacts: dict[tuple[int, int], ContactEngagement] = field(default_factory=dict)
    clients: dict[tuple[int, int], ClientRecord] = field(default_factory=dict)
    rows: list[HistoryRow] = field(default_factory=list)
    locked: list[tuple[int, int]] = field(default_factory=list)
    # The lead-score refreshes asked for: (org id, contact ids, as of).
    lead_refreshes: list[tuple[int, tuple[int, ...], datetime]] = field(default_factory=list)

    def add_contact(self, org_id: int, contact_id: int, *, client_id: int | None = None) -> None:
        """Store a contact that has no engagement yet."""
        self.contacts[(org_id, contact_id)] = ContactEngagement(
            contact_id=contact_id,
            client_id=client_id,
            score=0.0,
            trend=EngagementTrend.UNKNOWN,
            last_replied_at=None,
            last_positive_interaction_at=None,
        )

    def history(self, org_id: int, contact_id: int) -> list[HistoryRow]:
        """The contact's rows in time order (ties by id)."""
        return sorted(
            (r for r in self.rows if (r.org_id, r.contact_id) == (org_id, contact_id)),
            key=lambda r: (r.occurred_at, r.id),
        )


class _HoldsEngagement(Protocol):
    engagement: EngagementStore


class FakeEngagement:
    """EngagementRepository over the `engagement` store of a world (read at each call, so a
    rolled-back world is seen as restored)."""

    def __init__(self, holder: _HoldsEngagement) -> None:
        self._h = holder

    @property
    def _s(self) -> EngagementStore:
        return self._h.engagement

    def lock_contacts(
        self, org_id: int, contact_ids: Sequence[int]
    ) -> dict[int, ContactEngagement]:
        found = {}
        for contact_id in sorted(contact_ids):
            contact = self._s.contacts.get((org_id, contact_id))
            if contact is not None:
                self._s.locked.append((org_id, contact_id))
                found[contact_id] = contact
        return found

    def recorded(
        self, org_id: int, keys: Sequence[tuple[int, EngagementEvent, EngagementKey]]
    ) -> set[tuple[int, EngagementEvent, EngagementKey]]:
        stored = set()
        for row in self._s.rows:
            if row.org_id != org_id:
                continue
            event = EngagementEvent(row.event)
            if row.inbound_email_id is not None:
                stored.add((row.contact_id, event, EngagementKey(row.inbound_email_id)))
            if row.email_send_id is not None:
                stored.add((row.contact_id, event, EngagementKey(email_send_id=row.email_send_id)))
            order_id = row.detail.get("order_id")
            if isinstance(order_id, int):
                stored.add((row.contact_id, event, EngagementKey(order_id=order_id)))
        return {key for key in keys if key in stored}

    @staticmethod
    def _scored(row: HistoryRow) -> ScoredEvent:
        return ScoredEvent(row.id, row.occurred_at, row.score_delta, row.score_after)

    def timelines(self, org_id: int, since: Mapping[int, datetime]) -> dict[int, list[ScoredEvent]]:
        result = {}
        for contact_id, start in since.items():
            rows = self._s.history(org_id, contact_id)
            before = [r for r in rows if r.occurred_at < start and r.score_after is not None]
            result[contact_id] = [self._scored(r) for r in before[-1:]] + [
                self._scored(r) for r in rows if r.occurred_at >= start
            ]
        return result

    def add(self, entries: Sequence[NewEngagement]) -> list[int]:
        ids = []
        for entry in entries:
            row_id = max((r.id for r in self._s.rows), default=0) + 1
            self._s.rows.append(
                HistoryRow(
                    id=row_id,
                    org_id=entry.org_id,
                    contact_id=entry.contact_id,
                    event=entry.event.value,
                    occurred_at=entry.occurred_at,
                    sentiment=entry.sentiment,
                    score_delta=entry.score_delta,
                    score_after=entry.score_after,
                    email_send_id=entry.email_send_id,
                    inbound_email_id=entry.inbound_email_id,
                    detail=dict(entry.detail),
                )
            )
            ids.append(row_id)
        return ids

    def rescore(self, scores: Sequence[tuple[int, float]]) -> None:
        by_id = dict(scores)
        self._s.rows = [
            replace(r, score_after=by_id[r.id]) if r.id in by_id else r for r in self._s.rows
        ]

    def save_contacts(self, org_id: int, states: Sequence[ContactEngagement]) -> None:
        for state in states:
            self._s.contacts[(org_id, state.contact_id)] = state

    def refresh_lead_scores(self, org_id: int, contact_ids: Sequence[int], *, at: datetime) -> None:
        self._s.lead_refreshes.append((org_id, tuple(contact_ids), at))

    def mark_client_re_engaged(
        self, org_id: int, client_id: int, *, at: datetime, stale_before: datetime
    ) -> bool:
        client = self._s.clients.get((org_id, client_id))
        if client is None:
            return False
        last = client.last_ordered_at
        stale = last is None or last < stale_before
        fresh_spell = client.re_engaged_at is None or (
            last is not None and client.re_engaged_at < last
        )
        if not (stale and fresh_spell):
            return False
        client.re_engaged_at = at
        return True

    def count_events(
        self, org_id: int, contact_id: int, event: EngagementEvent, since: datetime
    ) -> int:
        return sum(
            1
            for r in self._s.history(org_id, contact_id)
            if r.event == event.value and r.occurred_at >= since
        )


class FakeClassifierRules:
    def __init__(self, world: World) -> None:
        self._w = world

    def list(self, org_id: int) -> builtins.list[Rule]:
        return sorted(
            (r for r in self._w.rules.values() if r.org_id == org_id),
            key=lambda r: (r.priority, r.id),
        )

    def list_active(self, org_id: int) -> builtins.list[Rule]:
        return [r for r in self.list(org_id) if r.is_active]

    def get(self, org_id: int, rule_id: int) -> Rule:
        rule = self._w.rules.get(rule_id)
        if rule is None or rule.org_id != org_id:
            raise NotFound(f"classification rule {rule_id} not found")
        return rule

    def find(self, org_id: int, *, rule_type: RuleType, pattern: str) -> Rule | None:
        return next(
            (r for r in self.list(org_id) if r.rule_type == rule_type and r.pattern == pattern),
            None,
        )

    def count(self, org_id: int, *, rule_type: RuleType | None = None) -> int:
        return sum(1 for r in self.list(org_id) if rule_type in (None, r.rule_type))

    def add(
        self,
        org_id: int,
        *,
        rule_type: RuleType,
        pattern: str,
        category: Category,
        priority: int,
        is_active: bool,
        created_by: int | None,
        now: datetime,
    ) -> Rule:
        rule = Rule(
            id=next(self._w.next_id),
            org_id=org_id,
            rule_type=rule_type,
            pattern=pattern,
            category=category,
            priority=priority,
            is_active=is_active,
            created_by=created_by,
            created_at=now,
        )
        self._w.rules[rule.id] = rule
        return rule

    def update(
        self,
        org_id: int,
        rule_id: int,
        *,
        category: Category | None,
        priority: int | None,
        is_active: bool | None,
    ) -> Rule:
        changes: dict[str, Any] = {
            "category": category,
            "priority": priority,
            "is_active": is_active,
        }
        rule = self.get(org_id, rule_id).model_copy(
            update={k: v for k, v in changes.items() if v is not None}
        )
        self._w.rules[rule_id] = rule
        return rule

    def delete(self, org_id: int, rule_id: int) -> None:
        del self._w.rules[self.get(org_id, rule_id).id]


class FakeReplyContexts:
    """The reply context read model over contexts the test stored in the world."""

    def __init__(self, world: World) -> None:
        self._w = world

    def reply_context(self, org_id: int, inbound_email_id: int, *, now: datetime) -> ReplyContext:
        found = self._w.reply_contexts.get((org_id, inbound_email_id))
        if found is None:
            raise NotFound(f"inbound email {inbound_email_id} not found")
        return found.model_copy(update={"as_of": now})


class FakeReplyPolicies:
    def __init__(self, world: World) -> None:
        self._w = world

    def get(self, org_id: int) -> ReplyPolicy:
        return self._w.reply_policies.get(org_id, ReplyPolicy())

    def save(
        self, org_id: int, policy: ReplyPolicy, *, by: int | None, now: datetime
    ) -> ReplyPolicy:
        stored = policy.model_copy(update={"updated_by": by, "updated_at": now})
        self._w.reply_policies[org_id] = stored
        return stored


class FakeReplyActions:
    """Contacts as a reply's intent finds, adds and pauses them, over the world's contacts."""

    def __init__(self, world: World) -> None:
        self._w = world

    def find_contact(self, org_id: int, email: str) -> KnownPerson | None:
        wanted = email.strip().lower()
        for (org, contact_id), c in sorted(self._w.contacts.items()):
            if org == org_id and c.email.lower() == wanted:
                return KnownPerson(
                    id=contact_id,
                    email=c.email,
                    client_id=c.client_id,
                    first_name=c.first_name,
                    last_name=c.last_name,
                    opted_out=c.opted_out,
                    email_status=c.email_status,
                )
        return None

    def add_contact(
        self,
        org_id: int,
        *,
        email: str,
        first_name: str | None,
        last_name: str | None,
        title: str | None,
        client_id: int | None,
        tags: Sequence[str],
        at: datetime,
    ) -> KnownPerson:
        found = self.find_contact(org_id, email)
        if found is not None:
            return found
        contact_id = next(self._w.next_id)
        self._w.contacts[(org_id, contact_id)] = make_contact(
            contact_id,
            email=email.strip().lower(),
            first_name=first_name,
            last_name=last_name,
            title=title,
            client_id=client_id,
            last_order_at=None,
            orders_year_before_last=0,
        )
        self._w.contact_tags[(org_id, contact_id)] = list(tags)
        added = self.find_contact(org_id, email)
        assert added is not None
        return added

    def pause_contact(
        self, org_id: int, contact_id: int, *, until: datetime, reason: str, at: datetime
    ) -> bool:
        changed = self._w.contact_pauses.get((org_id, contact_id)) != (until, reason[:64])
        self._w.contact_pauses[(org_id, contact_id)] = (until, reason[:64])
        return changed

    def contact_zone(self, org_id: int, contact_id: int) -> tuple[str | None, str | None]:
        found = self._w.contacts.get((org_id, contact_id))
        return self._w.contact_zones.get((org_id, contact_id)), found.state if found else None

    def campaign_name(self, org_id: int, campaign_id: int) -> str | None:
        return self._w.campaign_names.get((org_id, campaign_id))

    def client_name(self, org_id: int, client_id: int) -> str | None:
        return self._w.client_names.get((org_id, client_id))


class FakeUnitOfWork:
    """One transaction over the world: what is not committed is undone at the end."""

    def __init__(self, world: World, clock: FixedClock) -> None:
        self._world = world
        self._saved: World | None = None
        self.campaigns = FakeCampaigns(world, clock)
        self.templates = FakeTemplates(world, clock)
        self.audience = FakeAudience(world)
        self.jobs = FakeJobs(world, clock)
        self.tasks = FakeTasks(world, clock)
        self.enrollments = FakeEnrollments(world)
        self.cards = FakeCards(world, clock)
        self.contexts = FakeContexts(world)
        self.events = FakeEvents(world)
        self.users = FakeUsers(world)
        self.orgs = FakeOrgs(world)
        self.engagement = FakeEngagement(world)
        self.classifier_rules = FakeClassifierRules(world)
        self.reply_contexts = FakeReplyContexts(world)
        self.reply_policies = FakeReplyPolicies(world)
        self.reply_actions = FakeReplyActions(world)
        self.cadence = FakeCadence(world)

    def __enter__(self) -> FakeUnitOfWork:
        if self._saved is not None:
            raise RuntimeError("unit of work is not re-entrant")
        self._saved = copy.deepcopy(self._world)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._saved is not None
        self._world.restore(self._saved)
        self._saved = None

    def commit(self) -> None:
        self._saved = copy.deepcopy(self._world)


class FakeMailer:
    """Sends every email at once (or fails them all, with `failing`) and keeps them."""

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []
        self.failing: str | None = None

    def send(self, email: OutgoingEmail) -> SendOutcome:
        if self.failing is not None:
            return SendOutcome(
                status=SendStatus.FAILED, email_send_id=0, message_id="", detail=self.failing
            )
        self.sent.append(email)
        n = len(self.sent)
        return SendOutcome(
            status=SendStatus.SENT,
            email_send_id=n,
            message_id=f"<{n}@salesbot.test>",
            gmail_thread_id=f"thread-{n}",
        )


class FakeNotifier:
    """A chat that keeps the messages posted and the updates made."""

    def __init__(self) -> None:
        self.posted: list[int] = []  # card ids, in posting order
        self.updated: list[tuple[int, CardState]] = []
        self.bulk: list[tuple[int, int]] = []  # (job id, batch)
        self.replaced: list[tuple[str, str, str]] = []  # (channel, ts, text)

    def post_card(
        self, view: CardView, *, channel: str | None, owner_slack_id: str | None
    ) -> tuple[str, str]:
        self.posted.append(view.card.id)
        return channel or "D-OWNER", f"{len(self.posted)}.000100"

    def update_card(self, view: CardView) -> None:
        self.updated.append((view.card.id, view.card.state))

    def replace_message(self, org_id: int, *, channel: str, ts: str, text: str) -> None:
        self.replaced.append((channel, ts, text))

    def post_bulk(
        self,
        org_id: int,
        *,
        job_name: str,
        job_id: int,
        batch: int,
        cards: builtins.list[Card],
        channel: str | None,
        owner_slack_id: str | None,
    ) -> None:
        self.bulk.append((job_id, batch))


@dataclass
class Outreaching:
    """The outreach services on a fake world, with the fakes to look at."""

    world: World
    clock: FixedClock
    mailer: FakeMailer
    notifier: FakeNotifier
    outreach: Outreach

    def uow(self) -> OutreachUnitOfWork:
        """A unit of work on the world, to set things up or look at them."""
        return FakeUnitOfWork(self.world, self.clock)

    def card(self, card_id: int) -> Card:
        return self.world.cards[card_id]

    def job(self, job_id: int) -> Job:
        return self.world.jobs[job_id].job

    def claim(self, job_id: int, *, kinds: Sequence[TaskKind] | None = None) -> list[JobTaskView]:
        """Claim the job's pending tasks (of `kinds`), as the task worker does."""
        claimed = []
        for task in sorted(self.world.tasks.values(), key=lambda t: t.id):
            if task.job_id == job_id and task.status == TaskStatus.PENDING:
                if kinds is None or task.kind in kinds:
                    running = task.model_copy(
                        update={"status": TaskStatus.RUNNING, "started_at": self.clock.now()}
                    )
                    self.world.tasks[task.id] = running
                    claimed.append(running)
        return claimed

    def run_tasks(self, job_id: int) -> int:
        """Run the job's tasks until none is pending; return how many ran."""
        ran = 0
        while batch := self.claim(job_id):
            for task in batch:
                self.outreach.tasks.run_task(task, org_id=task.org_id)
            ran += len(batch)
        return ran


def outreaching(
    *,
    notifier: bool = True,
    work_lease: timedelta = timedelta(minutes=5),
    chat: FakeNotifier | None = None,
) -> Outreaching:
    """Build the outreach services on an empty fake world, with a mailer and a chat (`chat`,
    or a FakeNotifier)."""
    world = World()
    clock = FixedClock(NOW)
    mailer = FakeMailer()
    chat = chat or FakeNotifier()

    def uow() -> OutreachUnitOfWork:
        return FakeUnitOfWork(world, clock)

    outreach = Outreach.build(
        Deps(uow=uow, clock=clock),
        unsubscribe_url=lambda org_id, contact_id, *_: (
            f"https://salesbot.test/u/{org_id}/{contact_id}"
        ),
        mailer=mailer,
        notifier=chat if notifier else None,
        work_lease=work_lease,
    )
    for user_id, name, role in (
        (REP, "Maria Lopez", "rep"),
        (OTHER_REP, "Sam Ortiz", "rep"),
        (ADMIN, "Ada Admin", "admin"),
    ):
        email = f"{name.split()[0].lower()}@pinnacle.test"
        world.users[(ORG, user_id)] = User(user_id, ORG, email, name, role, f"U{user_id}")
    return Outreaching(world, clock, mailer, chat, outreach)


def actor(user_id: int = REP, *, role: str = "rep") -> Actor:
    """Someone of the organization acting in Slack."""
    return Actor(org_id=ORG, user_id=user_id, role=role, slack_user_id=f"U{user_id}")


def make_contact(contact_id: int, **overrides: Any) -> ContactContext:
    """A reachable contact of a client that stopped ordering."""
    values: dict[str, Any] = {
        "contact_id": contact_id,
        "email": f"dana{contact_id}@pinnaclelending.test",
        "first_name": f"Dana{contact_id}",
        "last_name": "Whitfield",
        "title": "Loan Officer",
        "role_code": "LO",
        "state": "TX",
        "client_id": 100,
        "company_name": "Pinnacle Lending",
        "company_domain": "pinnaclelending.test",
        "last_order_at": NOW - timedelta(days=127),
        "orders_last_year": 0,
        "orders_year_before_last": 12,
        "last_property_address": None,
        "last_contacted_at": None,
        "last_replied_at": None,
        "opted_out": False,
        "email_status": "valid",
        **overrides,
    }
    return ContactContext(**values)
