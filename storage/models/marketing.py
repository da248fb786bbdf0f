"""Tables of what an organization sends: marketing campaigns and email templates."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, json_dict, json_list, org_fk, pk
from storage.types import BigId


class MarketingCampaign(Base):
    __tablename__ = "marketing_campaigns"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index("ix_marketing_campaigns_org_id_status", "org_id", "status"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    goal: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    target_role_codes: Mapped[list[str]] = json_list()
    target_role_categories: Mapped[list[str]] = json_list()
    exclude_role_codes: Mapped[list[str]] = json_list()
    include_tags: Mapped[list[str]] = json_list()
    exclude_tags: Mapped[list[str]] = json_list()
    min_lead_score: Mapped[int | None] = mapped_column(Integer)
    states: Mapped[list[str]] = json_list()
    stale_client_days: Mapped[int | None] = mapped_column(Integer)
    include_never_ordered: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("true")
    )
    min_days_since_contacted: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[list[str]] = json_list()
    metrics: Mapped[dict[str, Any]] = json_dict()
    email_template_ids: Mapped[list[int]] = json_list()
    cadence_days: Mapped[list[int]] = json_list()
    # A multi-channel cadence (domain.jobs.Cadence: steps, business days); empty: the
    # cadence_days, every step an email.
    cadence: Mapped[dict[str, Any]] = json_dict()
    # What a person's reply does to their enrollment in this campaign: "stop" or "pause".
    on_reply: Mapped[str] = mapped_column(
        String(8), nullable=False, default="stop", server_default=text("'stop'")
    )
    review_channel_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class EmailTemplate(Base):
    __tablename__ = "email_templates"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    subject: Mapped[str] = mapped_column(String(998), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    body_html: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[list[str]] = json_list()
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()
