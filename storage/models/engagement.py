"""Table of a contact's engagement history (sends, opens, replies, opt-outs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, json_dict, org_fk, pk
from storage.types import BigId, UTCDateTime

_REPLIES = "event IN ('replied', 'positive_reply', 'negative_reply', 'meeting_request')"


class ContactEngagementEvent(Base):
    __tablename__ = "contact_engagement_history"
    __table_args__ = (
        Index("ix_contact_engagement_org_contact_at", "org_id", "contact_id", "occurred_at"),
        # Analytics and the digest: an organization's events of a kind in a window.
        Index("ix_contact_engagement_org_event_at", "org_id", "event", "occurred_at"),
        # Analytics: the reply an order after a reply follows, the top of a contact's range.
        Index(
            "ix_contact_engagement_replies",
            "org_id",
            "contact_id",
            "occurred_at",
            "id",
            postgresql_include=["email_send_id", "inbound_email_id"],
            postgresql_where=text(_REPLIES),
            sqlite_where=text(_REPLIES),
        ),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
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
    detail: Mapped[dict[str, Any]] = json_dict()
