"""Tables of the work Salesbot does: jobs, their tasks, enrollments and review cards."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, created, json_dict, org_fk, pk
from storage.types import BigId, UTCDateTime


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_org_id_status", "org_id", "status"),
        Index("ix_jobs_org_id_campaign_id", "org_id", "campaign_id"),
        # The request that created the job (a Slack command's trigger id): a request run
        # again after a crash finds its job instead of creating a second one.
        Index("ux_jobs_org_id_request_key", "org_id", "request_key", unique=True),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    owner_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="SET NULL")
    )
    # `campaign`, or `inbox`: the organization's one job for reply cards answering no job.
    kind: Mapped[str] = mapped_column(
        String(16), nullable=False, default="campaign", server_default="campaign"
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    params: Mapped[dict[str, Any]] = json_dict()
    request_key: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Planning finished (all step-0 tasks created); until then `plan_lease_until` says
    # who plans it, and a job whose planner died is planned again by the recovery sweep.
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    plan_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The deliverability guard counts from here (a resumption) or its window, the later.
    guard_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_tasks: Mapped[int] = counter()
    completed_tasks: Mapped[int] = counter()
    failed_tasks: Mapped[int] = counter()
    cards_created: Mapped[int] = counter()
    cards_approved: Mapped[int] = counter()
    cards_executed: Mapped[int] = counter()
    emails_sent: Mapped[int] = counter()
    errors_count: Mapped[int] = counter()
    # The latest failure (a card not posted, an email not sent, planning stopped), so the
    # job's status says why beside errors_count; who cancelled the job, for its cards.
    last_error: Mapped[str | None] = mapped_column(Text)
    cancelled_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )


class JobTask(Base):
    __tablename__ = "job_tasks"
    __table_args__ = (
        Index("ix_job_tasks_org_id_job_id_status", "org_id", "job_id", "status"),
        Index("ix_job_tasks_org_id_status_created", "org_id", "status", "created_at"),
        # A job's last batch (`TaskRepo.next_batch`): read from the end of the index.
        Index("ix_job_tasks_org_id_job_id_batch", "org_id", "job_id", "batch"),
        # Analytics: the cadence step of a campaign's sends, without the tasks' rows.
        Index(
            "ix_job_tasks_org_id_job_id_step", "org_id", "job_id", postgresql_include=["id", "step"]
        ),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    batch: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    input: Mapped[dict[str, Any]] = json_dict()
    output: Mapped[dict[str, Any]] = json_dict()
    created_at: Mapped[datetime] = created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_message: Mapped[str | None] = mapped_column(Text)
    # How many times the task was claimed again after its worker's lease ran out; with
    # the id it names a claim, so a worker that outlived its lease cannot finish it.
    retry_count: Mapped[int] = counter()
    # A running task belongs to its claim until `lease_until`; then it may be claimed again.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("job_id", "contact_id"),
        Index("ix_enrollments_org_status_due", "org_id", "status", "next_due_at"),
        Index("ix_enrollments_org_contact", "org_id", "contact_id"),
        Index("ix_enrollments_job_id_status_due", "job_id", "status", "next_due_at"),
        # Analytics: a job's first enrollment, and the enrollments of a window.
        Index("ix_enrollments_org_id_job_id_created_at", "org_id", "job_id", "created_at"),
        # The cadence tick's claim, in due order: only active rows with a due time.
        Index(
            "ix_enrollments_due",
            "next_due_at",
            postgresql_where=text("status = 'active' AND next_due_at IS NOT NULL"),
            sqlite_where=text("status = 'active' AND next_due_at IS NOT NULL"),
        ),
        # Contacts lost to a bounce or an opt-out lately: the deliverability guard's jobs.
        Index(
            "ix_enrollments_losses",
            "updated_at",
            postgresql_where=text("status = 'stopped' AND stop_reason IN ('bounced', 'opted out')"),
            sqlite_where=text("status = 'stopped' AND stop_reason IN ('bounced', 'opted out')"),
        ),
        # Out-of-office pauses that end by themselves.
        Index(
            "ix_enrollments_resume",
            "paused_until",
            postgresql_where=text("status = 'paused' AND paused_until IS NOT NULL"),
            sqlite_where=text("status = 'paused' AND paused_until IS NOT NULL"),
        ),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    )
    step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    # The inbound message that stopped or paused the enrollment (a reply, bounce, opt-out).
    stop_email_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("inbound_emails.id", ondelete="SET NULL", use_alter=True)
    )
    gmail_thread_id: Mapped[str | None] = mapped_column(String(64))
    # Set while the current step is in flight (its tasks made, its card not yet ended).
    step_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the previous step ended (sent, done, skipped): the next one counts from it.
    last_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why a due step waits (business hours, a holiday, fatigue, a reply found at the
    # last look); cleared when the step runs.
    defer_reason: Mapped[str | None] = mapped_column(String(200))
    # The zone the steps are scheduled in and where it came from, e.g. "America/Chicago
    # (state)".
    time_zone: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        Index("ix_cards_org_id_state", "org_id", "state"),
        # A job's cards by state: listing them, and "is any card still undecided?".
        Index("ix_cards_org_id_job_id_state", "org_id", "job_id", "state"),
        Index("ix_cards_org_id_contact_id", "org_id", "contact_id"),
        # Analytics: the task of a campaign's sends' cards, without the cards' rows.
        Index(
            "ix_cards_org_id_job_id_task", "org_id", "job_id", postgresql_include=["id", "task_id"]
        ),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    job_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("jobs.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("job_tasks.id", ondelete="SET NULL")
    )
    enrollment_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    client_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("clients.id", ondelete="SET NULL")
    )
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    inbound_email_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("inbound_emails.id", ondelete="SET NULL", use_alter=True)
    )
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="suggested")
    priority: Mapped[str] = mapped_column(String(8), nullable=False, default="medium")
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    rationale: Mapped[str | None] = mapped_column(Text)
    action_payload: Mapped[dict[str, Any]] = json_dict()
    draft_fingerprint: Mapped[str | None] = mapped_column(String(64))
    approved_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text)
    slack_channel_id: Mapped[str | None] = mapped_column(String(32))
    slack_message_ts: Mapped[str | None] = mapped_column(String(32))
    # A snoozed card is posted again at this time (the snooze sweep clears it).
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()
