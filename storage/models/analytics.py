"""Tables of what Salesbot reports: digest subscriptions and their posts, the stale-client
ranking, and the opens and clicks of organizations that turned tracking on (issue 14)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, created, json_dict, org_fk, pk
from storage.types import BigId, UTCDateTime


class DigestSubscription(Base):
    """A channel's daily or weekly engagement digest (`/digest subscribe`).

    `scope_key` names the filters ("all", "c12", "r7", "c12-r7") so a channel holds one
    subscription per frequency and scope. `next_run_at` is the UTC instant of the next
    local posting time; the scheduler claims the subscriptions whose time has come.
    """

    __tablename__ = "digest_subscriptions"
    __table_args__ = (
        UniqueConstraint("org_id", "channel_id", "frequency", "scope_key"),
        Index("ix_digest_subscriptions_next_run_at", "next_run_at"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    channel_id: Mapped[str] = mapped_column(String(32), nullable=False)
    channel_name: Mapped[str | None] = mapped_column(String(200))
    frequency: Mapped[str] = mapped_column(String(8), nullable=False)  # daily | weekly
    # Weekly digests: the weekday they post on (0 = Monday).
    weekday: Mapped[int | None] = mapped_column(Integer)
    # The local posting time, "HH:MM", in `time_zone` (an IANA name).
    local_time: Mapped[str] = mapped_column(String(5), nullable=False)
    time_zone: Mapped[str] = mapped_column(String(64), nullable=False)
    scope_key: Mapped[str] = mapped_column(String(64), nullable=False, default="all")
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="CASCADE")
    )
    rep_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE")
    )
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # The last failure to post, shown by `/digest list` until a post succeeds.
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class DigestPost(Base):
    """One digest to post: a scheduled period of a subscription (unique: posted once per
    period) or a `/digest now`. The outbox-like states: pending → posting (leased) →
    posted | failed; `file_id` keeps the uploaded chart so a retry does not upload again."""

    __tablename__ = "digest_posts"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period_start"),
        Index("ix_digest_posts_status_not_before", "status", "not_before"),
        Index("ix_digest_posts_org_id_created_at", "org_id", "created_at"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    subscription_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("digest_subscriptions.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # scheduled | on_demand
    frequency: Mapped[str] = mapped_column(String(8), nullable=False)
    channel_id: Mapped[str] = mapped_column(String(32), nullable=False)
    time_zone: Mapped[str] = mapped_column(String(64), nullable=False)
    # The period reported, [period_start, period_end), in UTC.
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    campaign_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="CASCADE")
    )
    rep_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE")
    )
    # Who asked (`/digest now`): their Slack user id, for the "asked by" line.
    requested_by: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = counter()
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    file_id: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    # The figures posted (the digest's read model as JSON), for the API and for checks.
    figures: Mapped[dict[str, Any]] = json_dict()
    created_at: Mapped[datetime] = created()
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ClientRanking(Base):
    """The daily ranking of stale clients worth a call (re-engagement targeting): one row
    per ranked client, replaced as a whole by each day's run."""

    __tablename__ = "client_rankings"
    __table_args__ = (
        UniqueConstraint("org_id", "client_id"),
        Index("ix_client_rankings_org_id_rank", "org_id", "rank"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    client_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False
    )
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    days_since_order: Mapped[int | None] = mapped_column(Integer)
    # Orders a month while the client was active, and how far engagement fell.
    past_order_rate: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    engagement_decay: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    # The contact to call (highest lead score among the reachable ones).
    best_contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    reasons: Mapped[dict[str, Any]] = json_dict()
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class EmailTrackingEvent(Base):
    """An open (pixel) or click (redirect) of a tracked send, counted once per send, kind,
    link and audience (people or bots and prefetchers); later hits only add to `hits`."""

    __tablename__ = "email_tracking_events"
    __table_args__ = (
        UniqueConstraint("email_send_id", "kind", "link_index", "by_bot"),
        Index("ix_email_tracking_events_org_id_first_at", "org_id", "first_at"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    email_send_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("email_sends.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(8), nullable=False)  # open | click
    # The link's position in the email (clicks); -1 for opens, so the key is never NULL.
    link_index: Mapped[int] = mapped_column(Integer, nullable=False, default=-1)
    url: Mapped[str | None] = mapped_column(Text)
    by_bot: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    bot_reason: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    hits: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
