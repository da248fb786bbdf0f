"""Tables of the content calendar (docs/content-calendar.md): marketing content, its
schedule per channel, and each organization's content settings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, created, json_list, org_fk, pk
from storage.types import BigId, UTCDateTime

_TYPES = (
    "'blog', 'social_post', 'email', 'case_study', 'whitepaper', 'video', 'infographic', "
    "'webinar', 'podcast', 'other'"
)
_CHANNELS = (
    "'email', 'linkedin', 'substack', 'tiktok', 'instagram', 'facebook', 'pinterest', "
    "'youtube', 'blog', 'newsletter', 'webinar', 'podcast'"
)


class MarketingContent(Base):
    __tablename__ = "marketing_content"
    __table_args__ = (
        # The same `/content add` modal submitted twice (a Slack retry) stores one item.
        UniqueConstraint("org_id", "source_key"),
        CheckConstraint(f"content_type IN ({_TYPES})", name="content_type"),
        CheckConstraint("status IN ('draft', 'ready', 'published', 'archived')", name="status"),
        Index("ix_marketing_content_org_id_status", "org_id", "status"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="SET NULL")
    )
    content_type: Mapped[str] = mapped_column(String(16), nullable=False)
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    # The text ready to copy onto the channel.
    body: Mapped[str] = mapped_column(Text, nullable=False, default="")
    link: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    owner_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    tags: Mapped[list[str]] = json_list()
    # Where the item came from, once: `slack:<view id>` for the `/content add` modal.
    source_key: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class ContentSchedule(Base):
    __tablename__ = "content_schedule"
    __table_args__ = (
        CheckConstraint(f"channel IN ({_CHANNELS})", name="channel"),
        CheckConstraint(
            "status IN ('scheduled', 'due', 'done', 'snoozed', 'skipped')", name="status"
        ),
        # The due-card sweep: what is waiting and came due (across organizations).
        Index("ix_content_schedule_status_due_at", "status", "due_at"),
        # The calendar and the digest: an organization's entries of a window.
        Index("ix_content_schedule_org_id_scheduled_for", "org_id", "scheduled_for"),
        Index("ix_content_schedule_content_id", "content_id"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    content_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("marketing_content.id", ondelete="CASCADE"), nullable=False
    )
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    # When the post should go out (UTC); the card comes on that day's local morning.
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # When the sweep posts the card: the morning of `scheduled_for`, or the snooze's end.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="scheduled")
    note: Mapped[str | None] = mapped_column(Text)
    # The card: where it was posted, under which lease, and how often it was tried.
    card_channel_id: Mapped[str | None] = mapped_column(String(32))
    card_ts: Mapped[str | None] = mapped_column(String(32))
    card_posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = counter()
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Who marked it done, snoozed or skipped it, and when; what was posted where.
    acted_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    acted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    posted_url: Mapped[str | None] = mapped_column(String(2000))
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class ContentSetting(Base):
    """Per organization: the marketing channel content cards go to without an owner."""

    __tablename__ = "content_settings"

    org_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = created()
