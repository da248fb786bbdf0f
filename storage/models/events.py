"""Table of idempotency keys: events already processed, by source."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, pk
from storage.types import BigId


class ProcessedEvent(Base):
    """Idempotency keys: a Slack event id, a Pub/Sub message id, a Gmail message id."""

    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("source", "event_key"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    event_key: Mapped[str] = mapped_column(String(255), nullable=False)
    processed_at: Mapped[datetime] = created()
