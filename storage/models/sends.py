"""Tables of outbound mail: the outbox's sends and the conversations they start."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, created, json_list, org_fk, pk
from storage.types import BigId, UTCDateTime


def _domain_of(context: Any) -> str | None:
    """The domain of the row's `to_email`, for inserts that do not give `to_domain`."""
    to_email = context.get_current_parameters().get("to_email")
    if not isinstance(to_email, str) or "@" not in to_email:
        return None
    return to_email.rsplit("@", 1)[1].strip().lower()[:255] or None


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
        # Linking a reply by its sender: our recent sends to that address.
        Index("ix_email_sends_org_id_to_email_sent_at", "org_id", "to_email", "sent_at"),
        # The cadence's per-domain daily fatigue limit.
        Index("ix_email_sends_org_id_to_domain_sent_at", "org_id", "to_domain", "sent_at"),
        # Analytics and the digest: an organization's (a campaign's) sends in a window.
        Index("ix_email_sends_org_id_sent_at", "org_id", "sent_at"),
        Index("ix_email_sends_campaign_id_sent_at", "campaign_id", "sent_at"),
        # The deliverability guard: a job's sends in its rolling window.
        Index("ix_email_sends_job_id_sent_at", "job_id", "sent_at"),
        # Analytics (storage/analytics.py): an organization's or a campaign's sent rows of
        # a window, and the sends engagement events join, by index-only scans (0017).
        Index(
            "ix_email_sends_sent_org_id_sent_at",
            "org_id",
            "sent_at",
            postgresql_include=["id", "campaign_id", "sender_user_id", "card_id", "tracked"],
            postgresql_where=text("status = 'sent'"),
            sqlite_where=text("status = 'sent'"),
        ),
        Index(
            "ix_email_sends_sent_campaign_id_sent_at",
            "campaign_id",
            "sent_at",
            postgresql_include=["id", "org_id", "sender_user_id", "card_id", "tracked"],
            postgresql_where=text("status = 'sent'"),
            sqlite_where=text("status = 'sent'"),
        ),
        # Analytics: a contact's last send before an unsubscribe-link opt-out, read from
        # the top of its range.
        Index(
            "ix_email_sends_sent_org_id_contact_id",
            "org_id",
            "contact_id",
            "sent_at",
            "id",
            postgresql_where=text("status = 'sent'"),
            sqlite_where=text("status = 'sent'"),
        ),
        # A newsletter issue goes to a subscriber once (0022): planning inserts with
        # ON CONFLICT DO NOTHING on this index, so a planning run again after a crash adds
        # only what is missing.
        Index(
            "uq_email_sends_newsletter_issue_id_contact_id",
            "newsletter_issue_id",
            "contact_id",
            unique=True,
            postgresql_where=text("newsletter_issue_id IS NOT NULL"),
            sqlite_where=text("newsletter_issue_id IS NOT NULL"),
        ),
        # The cadence's fatigue limits: emails on their way to a chunk's domains.
        Index(
            "ix_email_sends_on_their_way",
            "org_id",
            "to_domain",
            postgresql_where=text("status IN ('queued', 'sending')"),
            sqlite_where=text("status IN ('queued', 'sending')"),
        ),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
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
    # The newsletter issue this email is one of (docs/newsletters.md).
    newsletter_issue_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("newsletter_issues.id", ondelete="SET NULL")
    )
    # Our own RFC 5322 Message-ID, generated and stored before Gmail is called.
    message_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    gmail_message_id: Mapped[str | None] = mapped_column(String(64))
    gmail_thread_id: Mapped[str | None] = mapped_column(String(64))
    to_email: Mapped[str] = mapped_column(String(320), nullable=False)
    # The recipient's domain, lower case (filled from to_email on insert).
    to_domain: Mapped[str | None] = mapped_column(String(255), default=_domain_of)
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
    references: Mapped[list[str]] = json_list()
    campaign_email: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    # newsletter, campaign, follow_up, announcement or transactional (null: written before
    # types): the send-time check and the unsubscribe link read it (0020).
    email_type: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    # Whether opens and clicks are tracked (the org's setting when the send was queued):
    # open and click rates count tracked sends only.
    tracked: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    attempt_count: Mapped[int] = counter()
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
    created_at: Mapped[datetime] = created()


class EmailConversation(Base):
    __tablename__ = "email_conversations"
    __table_args__ = (
        UniqueConstraint("org_id", "gmail_thread_id"),
        Index("ix_email_conversations_org_id_contact_id", "org_id", "contact_id"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
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
    sent_count: Mapped[int] = counter()
    reply_count: Mapped[int] = counter()
    last_sentiment: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = created()
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
