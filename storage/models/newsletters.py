"""Tables of newsletters (docs/newsletters.md): a newsletter and its issues.

An issue's emails are outbox rows (`email_sends.newsletter_issue_id`), one per subscriber:
a unique index on (newsletter_issue_id, contact_id) is what keeps it to one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, json_dict, json_list, org_fk, pk
from storage.types import BigId, JsonType, UTCDateTime

_ISSUE_STATUSES = "'draft', 'in_review', 'scheduled', 'sending', 'sent', 'rejected', 'cancelled'"


class Newsletter(Base):
    __tablename__ = "newsletter"
    __table_args__ = (
        Index("ix_newsletter_org_id", "org_id"),
        CheckConstraint("cap_share_percent BETWEEN 1 AND 100", name="cap_share_percent"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # The users whose connected Gmail mailboxes send it (ids, in order).
    sender_user_ids: Mapped[list[int]] = json_list()
    # The share of each sender mailbox's daily cap an issue may use (the rest stays for
    # the reps' own outreach).
    cap_share_percent: Mapped[int] = mapped_column(
        Integer, nullable=False, default=50, server_default="50"
    )
    # Where the preview cards of its issues are posted.
    slack_channel_id: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class NewsletterIssue(Base):
    __tablename__ = "newsletter_issues"
    __table_args__ = (
        Index("ix_newsletter_issues_org_id_newsletter_id", "org_id", "newsletter_id"),
        # The sweep: issues being planned or sent.
        Index("ix_newsletter_issues_status", "status"),
        CheckConstraint(f"status IN ({_ISSUE_STATUSES})", name="status"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    newsletter_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("newsletter.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    subject_template: Mapped[str] = mapped_column(String(998), nullable=False)
    html_template: Mapped[str] = mapped_column(Text, nullable=False, default="")
    text_template: Mapped[str] = mapped_column(Text, nullable=False)
    # The issue's own template variables ({name: value}).
    variables: Mapped[dict[str, Any]] = json_dict()
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    # The preview card: its message and the fingerprint of what it shows.
    slack_channel_id: Mapped[str | None] = mapped_column(String(32))
    slack_message_ts: Mapped[str | None] = mapped_column(String(32))
    card_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # What the card shows: the sample, the plan, the last outcome (JSON of the domain).
    card: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    audience_count: Mapped[int | None] = mapped_column(Integer)
    planned_count: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    planned_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    planned_finish: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The sending plan fixed at the first planning claim (mailboxes, pace, start).
    plan: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    # Planning: the last contact planned, the lease of the worker planning, when done.
    plan_cursor: Mapped[int] = mapped_column(BigId, nullable=False, default=0, server_default="0")
    plan_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    approved_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()
