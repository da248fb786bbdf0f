"""Table of the email side of a campaign: one row per campaign and cadence step (issue 16).

A materialized copy of the analytics read model (domain/email_campaigns.py says why and
when it is written); nothing but `storage/email_campaigns.py` writes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, json_list, org_fk, pk
from storage.types import BigId, UTCDateTime


class EmailCampaign(Base):
    __tablename__ = "email_campaigns"
    # Null steps (sends outside a cadence) are not distinct to this constraint; a refresh
    # replaces a campaign's rows under a lock of the campaign (storage/email_campaigns.py),
    # so there is one such row per campaign all the same.
    __table_args__ = (UniqueConstraint("campaign_id", "step"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    campaign_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("marketing_campaigns.id", ondelete="CASCADE"), nullable=False
    )
    # The cadence step (0: the first email); null: sends outside a cadence.
    step: Mapped[int | None] = mapped_column(Integer)
    # Distinct subject lines sent, the most used first (domain.email_campaigns.MAX_SUBJECTS).
    subjects: Mapped[list[Any]] = json_list()
    sent: Mapped[int] = counter()
    delivered: Mapped[int] = counter()
    bounced: Mapped[int] = counter()
    unsubscribed: Mapped[int] = counter()
    replied: Mapped[int] = counter()
    first_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
