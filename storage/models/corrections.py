"""What reps teach the classifier (issue 12): their re-labels, and the rules they suggest.

A `classifier_corrections` row is one re-label of one inbound message from a card or the
API: who, the labels before and after, the sender. Identical corrections for a sender or a
domain become a `rule_proposals` row an admin accepts (it becomes a `classifier_rules` row)
or dismisses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, json_dict, org_fk, pk
from storage.types import BigId, UTCDateTime


class ClassifierCorrection(Base):
    __tablename__ = "classifier_corrections"
    __table_args__ = (
        Index("ix_classifier_corrections_org_id_created_at", "org_id", "created_at"),
        Index("ix_classifier_corrections_org_id_sender_domain", "org_id", "sender_domain"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    inbound_email_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inbound_emails.id", ondelete="CASCADE"), nullable=False
    )
    card_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("cards.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    sender_email: Mapped[str | None] = mapped_column(String(320))
    sender_domain: Mapped[str | None] = mapped_column(String(255))
    # {"category": …, "intent": …, "sentiment": …} as they were, and as the rep set them.
    before: Mapped[dict[str, Any]] = json_dict()
    after: Mapped[dict[str, Any]] = json_dict()
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created()


class RuleProposal(Base):
    __tablename__ = "rule_proposals"
    __table_args__ = (UniqueConstraint("org_id", "rule_type", "pattern", "category"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    rule_type: Mapped[str] = mapped_column(String(32), nullable=False)
    pattern: Mapped[str] = mapped_column(String(500), nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    corrections: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )
    # open → accepted (rule_id set) or dismissed.
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="open", server_default="open"
    )
    rule_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("classifier_rules.id", ondelete="SET NULL")
    )
    decided_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    slack_channel_id: Mapped[str | None] = mapped_column(String(32))
    slack_message_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()
