"""Tables of inbound Gmail: received messages, stored push notifications, classifier rules.

Also declares the index the retry job claims inbound messages with: it covers only rows
that wait for a fetch (`next_attempt_at` set), so its size follows the work that is due,
not the size of `inbound_emails`.
"""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, created, json_dict, json_list, org_fk, pk
from storage.types import BigId, UTCDateTime


class InboundEmail(Base):
    __tablename__ = "inbound_emails"
    __table_args__ = (
        UniqueConstraint("gmail_account_id", "gmail_message_id"),
        Index("ix_inbound_emails_org_id_status", "org_id", "status"),
        Index("ix_inbound_emails_org_id_contact_id", "org_id", "contact_id"),
        Index("ix_inbound_emails_org_id_message_id_header", "org_id", "message_id_header"),
        # The pipeline claims parsed messages across organizations, oldest lease first.
        Index("ix_inbound_emails_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    gmail_account_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("gmail_accounts.id", ondelete="SET NULL")
    )
    gmail_message_id: Mapped[str] = mapped_column(String(64), nullable=False)
    gmail_thread_id: Mapped[str | None] = mapped_column(String(64))
    message_id_header: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = json_list()
    from_email: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(300))
    to_emails: Mapped[list[str]] = json_list()
    subject: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    body_text: Mapped[str | None] = mapped_column(Text)
    reply_text: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = json_dict()
    attachments: Mapped[list[dict[str, Any]]] = json_list()
    flags: Mapped[list[str]] = json_list()
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="received")
    error: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = counter()
    # Set while the message waits for a fetch: its next attempt, or a worker's lease.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Gmail's labels (SENT marks mail a rep sent by hand) and the message's size in bytes.
    label_ids: Mapped[list[str]] = json_list()
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    cc_emails: Mapped[list[str]] = json_list()
    # A bounce's per-recipient DSN blocks and the headers of the message it returns.
    delivery_status: Mapped[list[dict[str, Any]]] = json_list()
    embedded_messages: Mapped[list[dict[str, Any]]] = json_list()
    defects: Mapped[list[str]] = json_list()
    category: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float | None] = mapped_column(Float)
    classified_by: Mapped[str | None] = mapped_column(String(16))
    sentiment: Mapped[str | None] = mapped_column(String(16))
    sentiment_score: Mapped[float | None] = mapped_column(Float)
    intent: Mapped[str | None] = mapped_column(String(32))
    entities: Mapped[dict[str, Any]] = json_dict()
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    email_send_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("email_sends.id", ondelete="SET NULL")
    )
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = created()
    # --- understanding (the pipeline after `parsed`) ---
    # What the deterministic detectors found (domain.detection.Detection as JSON), written
    # when the message is parsed, while its raw bytes are at hand.
    detection: Mapped[dict[str, Any]] = json_dict()
    # Who decided the classification beyond `classified_by`: "rule 12", "bounce", a model name.
    decided_detail: Mapped[str | None] = mapped_column(String(200))
    injection_attempt: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    # Why the category was changed or escalated (low confidence, malformed model output...).
    classification_reason: Mapped[str | None] = mapped_column(Text)
    # Short notes about the pipeline's handling (body truncated, hidden text removed...).
    notes: Mapped[list[str]] = json_list()
    # What the pipeline did because of the message (opt-out, enrollment stopped...), in order.
    actions: Mapped[list[dict[str, Any]]] = json_list()
    pipeline_attempts: Mapped[int] = counter()
    # Set when the message was classified offline because Claude was away: re-classify then.
    reclassify_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    conversation_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("email_conversations.id", ondelete="SET NULL")
    )
    client_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("clients.id", ondelete="SET NULL")
    )


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

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    gmail_account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("gmail_accounts.id", ondelete="CASCADE"), nullable=False
    )
    pubsub_message_id: Mapped[str] = mapped_column(String(128), nullable=False)
    email_address: Mapped[str] = mapped_column(String(320), nullable=False)
    history_id: Mapped[int] = mapped_column(BigId, nullable=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = counter()
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = created()


class ClassifierRule(Base):
    __tablename__ = "classifier_rules"
    __table_args__ = (Index("ix_classifier_rules_org_id_active", "org_id", "is_active"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
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
    created_at: Mapped[datetime] = created()
