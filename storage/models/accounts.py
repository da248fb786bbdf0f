"""Tables of who uses Salesbot: organizations, their users, their API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, json_dict, org_fk, pk
from storage.types import BigId, UTCDateTime


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = pk()
    slug: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slack_team_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    # Below this confidence a classification becomes ESCALATE (a person decides).
    classify_threshold: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.7, server_default=text("0.7")
    )
    # Where reply cards go when no rep or review channel can take them (`/triage set`).
    triage_channel_id: Mapped[str | None] = mapped_column(String(32))
    # Send window, time zone, holidays, fatigue limits, deliverability thresholds
    # (domain.cadence.CadenceSettings; empty: the defaults).
    cadence_settings: Mapped[dict[str, Any]] = json_dict()
    # Lead scoring weights, stale-client targeting and open/click tracking
    # (domain.analytics.AnalyticsSettings; empty: the defaults, tracking off).
    analytics_settings: Mapped[dict[str, Any]] = json_dict()
    created_at: Mapped[datetime] = created()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("org_id", "email"),
        UniqueConstraint("org_id", "slack_user_id"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="rep")
    created_at: Mapped[datetime] = created()
    # One other Gmail address the user may connect besides their own, allowed by an admin
    # (whose email is kept, not their id: the record outlives the admin's account).
    gmail_address_allowed: Mapped[str | None] = mapped_column(String(320))
    gmail_address_allowed_by: Mapped[str | None] = mapped_column(String(320))
    gmail_address_allowed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_org_id", "org_id"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    scope: Mapped[str] = mapped_column(String(16), nullable=False, default="write")
    created_at: Mapped[datetime] = created()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PeriodicLease(Base):
    """A periodic job's lease where advisory locks are not available (SQLite): the process
    whose name is `holder` runs the job until `lease_until`."""

    __tablename__ = "periodic_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
