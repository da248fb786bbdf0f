"""SQLAlchemy 2 models: the whole schema, one class per table.

Every tenant table carries `org_id`, and every index that serves a tenant query
starts with it. Rows never leave `storage/`: repositories turn them into domain
objects.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import BigId, JsonType, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention migrations rely on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _pk() -> Mapped[int]:
    return mapped_column(BigId, primary_key=True, autoincrement=True)


def _org_fk() -> Mapped[int]:
    return mapped_column(BigId, ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime, nullable=False, server_default=func.current_timestamp())


def _counter() -> Mapped[int]:
    return mapped_column(Integer, nullable=False, default=0, server_default="0")


def _json_list() -> Mapped[list[Any]]:
    return mapped_column(JsonType, nullable=False, default=list, server_default=text("'[]'"))


def _json_dict() -> Mapped[dict[str, Any]]:
    return mapped_column(JsonType, nullable=False, default=dict, server_default=text("'{}'"))


# --- organizations, users, tokens -------------------------------------------------------


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = _pk()
    slug: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slack_team_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = _created()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("org_id", "email"),
        UniqueConstraint("org_id", "slack_user_id"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="rep")
    created_at: Mapped[datetime] = _created()
    # One other Gmail address the user may connect besides their own, allowed by an admin
    # (whose email is kept, not their id: the record outlives the admin's account).
    gmail_address_allowed: Mapped[str | None] = mapped_column(String(320))
    gmail_address_allowed_by: Mapped[str | None] = mapped_column(String(320))
    gmail_address_allowed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_org_id", "org_id"),)

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    scope: Mapped[str] = mapped_column(String(16), nullable=False, default="write")
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- CRM: clients, contacts, orders, properties -----------------------------------------


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("org_id", "domain"),
        Index("ix_clients_org_id_last_ordered_at", "org_id", "last_ordered_at"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    domain: Mapped[str] = mapped_column(String(253), nullable=False)
    client_type: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[list[str]] = _json_list()
    # Denormalised from orders by the order import so a stale-client audience is a
    # column comparison instead of an aggregate over millions of orders.
    last_ordered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("org_id", "email"),
        Index("ix_contacts_org_id_client_id", "org_id", "client_id"),
        Index("ix_contacts_org_id_role_code", "org_id", "role_code"),
        Index("ix_contacts_org_id_last_contacted_at", "org_id", "last_contacted_at"),
        # Serves audience queries: only reachable contacts, with every column the
        # audience filters read, so PostgreSQL answers with an index-only scan.
        Index(
            "ix_contacts_reachable",
            "org_id",
            "role_code",
            postgresql_include=[
                "client_id",
                "tags",
                "role_category",
                "state",
                "lead_score",
                "last_contacted_at",
            ],
            postgresql_where=text("opted_out_at IS NULL AND email_status = 'valid'"),
            sqlite_where=text("opted_out_at IS NULL AND email_status = 'valid'"),
        ),
        Index(
            "ix_contacts_tags_gin",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_ops"},
        ),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    client_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("clients.id", ondelete="SET NULL")
    )
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    role_code: Mapped[str | None] = mapped_column(String(32))
    role_category: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(String(2))
    tags: Mapped[list[str]] = _json_list()
    lead_score: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_preferences: Mapped[dict[str, Any]] = _json_dict()
    email_status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="valid", server_default="valid"
    )
    engagement_score: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.0, server_default=text("0")
    )
    engagement_trend: Mapped[str] = mapped_column(
        String(16), nullable=False, default="unknown", server_default="unknown"
    )
    last_positive_interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_contacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Property(Base):
    __tablename__ = "properties"
    __table_args__ = (UniqueConstraint("org_id", "address_key"),)

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    address_line: Mapped[str] = mapped_column(String(300), nullable=False)
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(2))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    # Lower-cased, whitespace-folded full address: the natural key.
    address_key: Mapped[str] = mapped_column(String(500), nullable=False)
    created_at: Mapped[datetime] = _created()


class AppraisalOrder(Base):
    __tablename__ = "appraisal_orders"
    __table_args__ = (
        UniqueConstraint("org_id", "order_number"),
        Index("ix_appraisal_orders_org_client_ordered", "org_id", "client_id", "ordered_at"),
        Index("ix_appraisal_orders_org_contact", "org_id", "contact_id"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    order_number: Mapped[str] = mapped_column(String(64), nullable=False)
    client_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    property_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("properties.id", ondelete="SET NULL")
    )
    property_address: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="ordered")
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fee: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


# --- marketing ----------------------------------------------------------------------------


class MarketingCampaign(Base):
    __tablename__ = "marketing_campaigns"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index("ix_marketing_campaigns_org_id_status", "org_id", "status"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    goal: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    target_role_codes: Mapped[list[str]] = _json_list()
    target_role_categories: Mapped[list[str]] = _json_list()
    exclude_role_codes: Mapped[list[str]] = _json_list()
    include_tags: Mapped[list[str]] = _json_list()
    exclude_tags: Mapped[list[str]] = _json_list()
    min_lead_score: Mapped[int | None] = mapped_column(Integer)
    states: Mapped[list[str]] = _json_list()
    stale_client_days: Mapped[int | None] = mapped_column(Integer)
    include_never_ordered: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    min_days_since_contacted: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[list[str]] = _json_list()
    metrics: Mapped[dict[str, Any]] = _json_dict()
    email_template_ids: Mapped[list[int]] = _json_list()
    cadence_days: Mapped[list[int]] = _json_list()
    review_channel_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class EmailTemplate(Base):
    __tablename__ = "email_templates"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    subject: Mapped[str] = mapped_column(String(998), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    body_html: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[list[str]] = _json_list()
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


# --- jobs, tasks, enrollments, cards ------------------------------------------------------


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_org_id_status", "org_id", "status"),
        Index("ix_jobs_org_id_campaign_id", "org_id", "campaign_id"),
        # The request that created the job (a Slack command's trigger id): a request run
        # again after a crash finds its job instead of creating a second one.
        Index("ux_jobs_org_id_request_key", "org_id", "request_key", unique=True),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    owner_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    params: Mapped[dict[str, Any]] = _json_dict()
    request_key: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Planning finished (all step-0 tasks created); until then `plan_lease_until` says
    # who plans it, and a job whose planner died is planned again by the recovery sweep.
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    plan_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_tasks: Mapped[int] = _counter()
    completed_tasks: Mapped[int] = _counter()
    failed_tasks: Mapped[int] = _counter()
    cards_created: Mapped[int] = _counter()
    cards_approved: Mapped[int] = _counter()
    cards_executed: Mapped[int] = _counter()
    emails_sent: Mapped[int] = _counter()
    errors_count: Mapped[int] = _counter()
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
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
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
    input: Mapped[dict[str, Any]] = _json_dict()
    output: Mapped[dict[str, Any]] = _json_dict()
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_message: Mapped[str | None] = mapped_column(Text)
    # How many times the task was claimed again after its worker's lease ran out; with
    # the id it names a claim, so a worker that outlived its lease cannot finish it.
    retry_count: Mapped[int] = _counter()
    # A running task belongs to its claim until `lease_until`; then it may be claimed again.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("job_id", "contact_id"),
        Index("ix_enrollments_org_status_due", "org_id", "status", "next_due_at"),
        Index("ix_enrollments_org_contact", "org_id", "contact_id"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
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
    gmail_thread_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        Index("ix_cards_org_id_state", "org_id", "state"),
        # A job's cards by state: listing them, and "is any card still undecided?".
        Index("ix_cards_org_id_job_id_state", "org_id", "job_id", "state"),
        Index("ix_cards_org_id_contact_id", "org_id", "contact_id"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
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
    action_payload: Mapped[dict[str, Any]] = _json_dict()
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
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


# --- email: accounts, sends, inbound, conversations, engagement -------------------------


class GmailAccount(Base):
    __tablename__ = "gmail_accounts"
    __table_args__ = (UniqueConstraint("org_id", "email"),)

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="connected")
    scopes: Mapped[list[str]] = _json_list()
    refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    history_id: Mapped[int | None] = mapped_column(BigId)
    watch_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    daily_send_cap: Mapped[int] = mapped_column(
        Integer, nullable=False, default=400, server_default="400"
    )
    min_send_interval_seconds: Mapped[int] = mapped_column(
        Integer, nullable=False, default=5, server_default="5"
    )
    # The earliest moment the next send may start, and until when a send in flight holds
    # the mailbox: senders reserve both under the row's lock, so the mailbox keeps its
    # spacing and sends one at a time whatever the number of workers.
    next_send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sending_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class EmailSend(Base):
    __tablename__ = "email_sends"
    __table_args__ = (
        Index("ix_email_sends_org_id_status", "org_id", "status"),
        Index("ix_email_sends_org_id_contact_id", "org_id", "contact_id"),
        Index("ix_email_sends_gmail_thread_id", "org_id", "gmail_thread_id"),
        # The daily cap counts a mailbox's sends of the last 24 hours.
        Index("ix_email_sends_gmail_account_id_sent_at", "gmail_account_id", "sent_at"),
        # The outbox claims due rows across organizations (queued by time, expired leases).
        Index("ix_email_sends_status_not_before", "status", "not_before"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    card_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("cards.id", ondelete="SET NULL"), unique=True
    )
    job_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("jobs.id", ondelete="SET NULL"))
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="SET NULL")
    )
    enrollment_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    gmail_account_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("gmail_accounts.id", ondelete="SET NULL")
    )
    # Our own RFC 5322 Message-ID, generated and stored before Gmail is called.
    message_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    gmail_message_id: Mapped[str | None] = mapped_column(String(64))
    gmail_thread_id: Mapped[str | None] = mapped_column(String(64))
    to_email: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(998), nullable=False)
    # What the outbox needs to (re)build the MIME message on every attempt.
    sender_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    from_email: Mapped[str | None] = mapped_column(String(320))
    to_name: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = _json_list()
    campaign_email: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    attempt_count: Mapped[int] = _counter()
    # queued: the next attempt time; the lease of a `sending` row is `claimed_until`.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reply_email_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("inbound_emails.id", ondelete="SET NULL", use_alter=True)
    )
    reply_sentiment: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created()


class InboundEmail(Base):
    __tablename__ = "inbound_emails"
    __table_args__ = (
        UniqueConstraint("gmail_account_id", "gmail_message_id"),
        Index("ix_inbound_emails_org_id_status", "org_id", "status"),
        Index("ix_inbound_emails_org_id_contact_id", "org_id", "contact_id"),
        Index("ix_inbound_emails_org_id_message_id_header", "org_id", "message_id_header"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    gmail_account_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("gmail_accounts.id", ondelete="SET NULL")
    )
    gmail_message_id: Mapped[str] = mapped_column(String(64), nullable=False)
    gmail_thread_id: Mapped[str | None] = mapped_column(String(64))
    message_id_header: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = _json_list()
    from_email: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(300))
    to_emails: Mapped[list[str]] = _json_list()
    subject: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    body_text: Mapped[str | None] = mapped_column(Text)
    reply_text: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = _json_dict()
    attachments: Mapped[list[dict[str, Any]]] = _json_list()
    flags: Mapped[list[str]] = _json_list()
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="received")
    error: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = _counter()
    # Set while the message waits for a fetch: its next attempt, or a worker's lease.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Gmail's labels (SENT marks mail a rep sent by hand) and the message's size in bytes.
    label_ids: Mapped[list[str]] = _json_list()
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    cc_emails: Mapped[list[str]] = _json_list()
    # A bounce's per-recipient DSN blocks and the headers of the message it returns.
    delivery_status: Mapped[list[dict[str, Any]]] = _json_list()
    embedded_messages: Mapped[list[dict[str, Any]]] = _json_list()
    defects: Mapped[list[str]] = _json_list()
    category: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float | None] = mapped_column(Float)
    classified_by: Mapped[str | None] = mapped_column(String(16))
    sentiment: Mapped[str | None] = mapped_column(String(16))
    sentiment_score: Mapped[float | None] = mapped_column(Float)
    intent: Mapped[str | None] = mapped_column(String(32))
    entities: Mapped[dict[str, Any]] = _json_dict()
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    email_send_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("email_sends.id", ondelete="SET NULL")
    )
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created()


class EmailConversation(Base):
    __tablename__ = "email_conversations"
    __table_args__ = (
        UniqueConstraint("org_id", "gmail_thread_id"),
        Index("ix_email_conversations_org_id_contact_id", "org_id", "contact_id"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="SET NULL")
    )
    job_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("jobs.id", ondelete="SET NULL"))
    first_send_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("email_sends.id", ondelete="SET NULL")
    )
    gmail_thread_id: Mapped[str] = mapped_column(String(64), nullable=False)
    sent_count: Mapped[int] = _counter()
    reply_count: Mapped[int] = _counter()
    last_sentiment: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = _created()
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ContactEngagementEvent(Base):
    __tablename__ = "contact_engagement_history"
    __table_args__ = (
        Index("ix_contact_engagement_org_contact_at", "org_id", "contact_id", "occurred_at"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    contact_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    )
    event: Mapped[str] = mapped_column(String(32), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    sentiment: Mapped[str | None] = mapped_column(String(16))
    score_delta: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.0, server_default=text("0")
    )
    score_after: Mapped[float | None] = mapped_column(Float)
    email_send_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("email_sends.id", ondelete="SET NULL")
    )
    inbound_email_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("inbound_emails.id", ondelete="SET NULL")
    )
    detail: Mapped[dict[str, Any]] = _json_dict()


class ClassifierRule(Base):
    __tablename__ = "classifier_rules"
    __table_args__ = (Index("ix_classifier_rules_org_id_active", "org_id", "is_active"),)

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    rule_type: Mapped[str] = mapped_column(String(32), nullable=False)
    pattern: Mapped[str] = mapped_column(String(500), nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=100)
    is_active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _created()


class ProcessedEvent(Base):
    """Idempotency keys: a Slack event id, a Pub/Sub message id, a Gmail message id."""

    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("source", "event_key"),)

    id: Mapped[int] = _pk()
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    event_key: Mapped[str] = mapped_column(String(255), nullable=False)
    processed_at: Mapped[datetime] = _created()


# --- Slack app installations (multi-workspace OAuth) -------------------------------------


class SlackInstallation(Base):
    """One OAuth install of the Slack app in a workspace; the latest row of a workspace wins.

    Tokens, and the incoming-webhook URL (a credential too), are stored encrypted by
    `storage.slack_store`. A row without an installer holds a bot only (`save_bot`).
    """

    __tablename__ = "slack_installations"
    __table_args__ = (
        Index(
            "ix_slack_installations_enterprise_team_installed",
            "enterprise_id",
            "team_id",
            "installed_at",
        ),
    )

    id: Mapped[int] = _pk()
    # Bound when the install is saved; null for an org-wide (Enterprise Grid) install, which
    # no single workspace, hence no single organization, owns.
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    client_id: Mapped[str] = mapped_column(String(32), nullable=False)
    app_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_name: Mapped[str | None] = mapped_column(String(200))
    enterprise_url: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[str | None] = mapped_column(String(32))
    team_name: Mapped[str | None] = mapped_column(String(200))
    is_enterprise_install: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    token_type: Mapped[str | None] = mapped_column(String(32))
    installer_user_id: Mapped[str | None] = mapped_column(String(32))
    bot_id: Mapped[str | None] = mapped_column(String(32))
    bot_user_id: Mapped[str | None] = mapped_column(String(32))
    bot_scopes: Mapped[list[str]] = _json_list()
    bot_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    bot_refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    bot_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_scopes: Mapped[list[str]] = _json_list()
    user_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    incoming_webhook_url_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    incoming_webhook_channel: Mapped[str | None] = mapped_column(String(200))
    incoming_webhook_channel_id: Mapped[str | None] = mapped_column(String(32))
    incoming_webhook_configuration_url: Mapped[str | None] = mapped_column(String(500))
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SlackOAuthState(Base):
    """An OAuth `state` issued by /slack/install, good for one callback before it expires."""

    __tablename__ = "slack_oauth_states"
    __table_args__ = (Index("ix_slack_oauth_states_expire_at", "expire_at"),)

    id: Mapped[int] = _pk()
    # Every table carries org_id; a state is issued before any workspace is known, so
    # Bolt's flow leaves it null.
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    state: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    expire_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


import storage.models_gmail  # noqa: E402, F401  (registers the Gmail tables on Base)
import storage.models_inbound  # noqa: E402,F401
import storage.models_slack  # noqa: E402,F401
