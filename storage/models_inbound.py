"""Tables of inbound Gmail sync: stored push notifications (imported by storage.models).

Also declares the index the retry job claims inbound messages with: it covers only rows
that wait for a fetch (`next_attempt_at` set), so its size follows the work that is due,
not the size of `inbound_emails`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, InboundEmail, _counter, _created, _org_fk, _pk
from storage.types import BigId, UTCDateTime

_DUE = "next_attempt_at IS NOT NULL"

Index(
    "ix_inbound_emails_next_attempt_at",
    InboundEmail.next_attempt_at,
    postgresql_where=text(_DUE),
    sqlite_where=text(_DUE),
)


class GmailPushNotification(Base):
    """One Pub/Sub push for one mailbox, stored before the push is answered.

    Keyed by the Pub/Sub message id (per account, should two organizations connect one
    mailbox), so a redelivered push inserts nothing. `not_before` is set while the row
    waits: when pending, the time it may be processed; when processing, the end of the
    worker's lease (a crashed worker's rows come back). Done and failed rows have none.
    """

    __tablename__ = "gmail_push_notifications"
    __table_args__ = (
        UniqueConstraint("gmail_account_id", "pubsub_message_id"),
        Index(
            "ix_gmail_push_notifications_not_before",
            "not_before",
            postgresql_where=text("not_before IS NOT NULL"),
            sqlite_where=text("not_before IS NOT NULL"),
        ),
        Index("ix_gmail_push_notifications_created_at", "created_at"),
    )

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    gmail_account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("gmail_accounts.id", ondelete="CASCADE"), nullable=False
    )
    pubsub_message_id: Mapped[str] = mapped_column(String(128), nullable=False)
    email_address: Mapped[str] = mapped_column(String(320), nullable=False)
    history_id: Mapped[int] = mapped_column(BigId, nullable=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = _counter()
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created()
