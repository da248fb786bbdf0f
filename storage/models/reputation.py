"""Tables of reputation (docs/reputation.md): reviews, response templates, escalation rules
and each organization's reputation settings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, org_fk, pk
from storage.types import BigId, UTCDateTime

_PLATFORMS = "'google', 'yelp', 'facebook', 'zillow', 'trustpilot'"


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("org_id", "platform", "external_id"),
        CheckConstraint(f"platform IN ({_PLATFORMS})", name="platform"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        CheckConstraint("sentiment_score BETWEEN -1 AND 1", name="sentiment_score"),
        # Trends and the digest: an organization's reviews of a window.
        Index("ix_reviews_org_id_received_at", "org_id", "received_at"),
        # The card a Slack click names: its review.
        Index("ix_reviews_org_id_response_card_id", "org_id", "response_card_id"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    external_id: Mapped[str] = mapped_column(String(200), nullable=False)
    author: Mapped[str | None] = mapped_column(String(200))
    rating: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    url: Mapped[str | None] = mapped_column(String(2000))
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = created()
    # `api`, `webhook` or `csv`: how the review came in.
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api")
    sentiment: Mapped[str] = mapped_column(String(16), nullable=False)
    sentiment_score: Mapped[float] = mapped_column(Float, nullable=False)
    # Who read the text ("claude:<model>", "offline:<version>", "rating" for no text).
    sentiment_source: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(24), nullable=False, default="new")
    escalated: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    # account_manager, legal or user; `escalated_user_id` is who it went to, when known.
    escalated_to: Mapped[str | None] = mapped_column(String(24))
    escalated_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    response_text: Mapped[str | None] = mapped_column(Text)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    responded_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    response_card_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("cards.id", ondelete="SET NULL")
    )
    escalation_card_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("cards.id", ondelete="SET NULL")
    )


class ReviewResponseTemplate(Base):
    __tablename__ = "review_response_templates"
    __table_args__ = (Index("ix_review_response_templates_org_id", "org_id"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    # positive, neutral, negative or legal.
    scenario: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    is_active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=true()
    )
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class ReviewEscalationRule(Base):
    __tablename__ = "review_escalation_rules"
    __table_args__ = (
        Index("ix_review_escalation_rules_org_id", "org_id"),
        CheckConstraint("kind IN ('keyword', 'rating', 'staff', 'legal')", name="kind"),
        CheckConstraint("route_to IN ('account_manager', 'legal', 'user')", name="route_to"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    pattern: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    route_to: Mapped[str] = mapped_column(String(24), nullable=False)
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    is_active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=true()
    )
    created_at: Mapped[datetime] = created()


class ReputationSetting(Base):
    """One row per organization that set anything about reputation."""

    __tablename__ = "reputation_settings"

    org_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    account_manager_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    legal_user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    channel_id: Mapped[str | None] = mapped_column(String(32))
    firm_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # Fernet under SALESBOT_SECRET_KEY (purpose "secrets-at-rest"), never the plain secret.
    webhook_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
