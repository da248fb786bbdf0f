"""The auto-reply policy of each organization (issue 12: which answers may leave unreviewed).

One row per organization at most; an organization without one has the defaults of
`domain.reply_policy.ReplyPolicy` (auto-replies off), so no row is written until an admin
changes the policy.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, json_list
from storage.types import BigId, UTCDateTime


class OrgReplyPolicy(Base):
    __tablename__ = "org_reply_policies"

    org_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    # Category names (domain.classification.Category values), sorted.
    categories: Mapped[list[str]] = json_list()
    min_confidence: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.95, server_default=text("0.95")
    )
    updated_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
