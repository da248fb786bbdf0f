"""Tables of the CRM an organization imports: clients, contacts, properties, appraisal orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, json_dict, json_list, org_fk, pk
from storage.types import BigId, UTCDateTime


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("org_id", "domain"),
        Index("ix_clients_org_id_last_ordered_at", "org_id", "last_ordered_at"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    domain: Mapped[str] = mapped_column(String(253), nullable=False)
    client_type: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[list[str]] = json_list()
    # Denormalised from orders by the order import so a stale-client audience is a
    # column comparison instead of an aggregate over millions of orders.
    last_ordered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a contact of this client, stale at the time, replied positively (re-engaged).
    re_engaged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("org_id", "email"),
        Index("ix_contacts_org_id_client_id", "org_id", "client_id"),
        Index("ix_contacts_org_id_role_code", "org_id", "role_code"),
        Index("ix_contacts_org_id_last_contacted_at", "org_id", "last_contacted_at"),
        # Serves audience queries: only reachable contacts, with every column the
        # audience filters read, so PostgreSQL answers with an index-only scan.
        Index(
            "ix_contacts_reachable",
            "org_id",
            "role_code",
            postgresql_include=[
                "client_id",
                "tags",
                "role_category",
                "state",
                "lead_score",
                "last_contacted_at",
            ],
            postgresql_where=text("opted_out_at IS NULL AND email_status = 'valid'"),
            sqlite_where=text("opted_out_at IS NULL AND email_status = 'valid'"),
        ),
        Index(
            "ix_contacts_tags_gin",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_ops"},
        ),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    client_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("clients.id", ondelete="SET NULL")
    )
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    role_code: Mapped[str | None] = mapped_column(String(32))
    role_category: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(String(2))
    tags: Mapped[list[str]] = json_list()
    lead_score: Mapped[int | None] = mapped_column(Integer)
    # When `lead_score` was last computed (domain.lead_scoring), and from what.
    lead_score_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str | None] = mapped_column(String(64))
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "Not now, try me in January": no outreach to the person before this time.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_reason: Mapped[str | None] = mapped_column(String(64))
    email_preferences: Mapped[dict[str, Any]] = json_dict()
    email_status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="valid", server_default="valid"
    )
    engagement_score: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.0, server_default=text("0")
    )
    engagement_trend: Mapped[str] = mapped_column(
        String(16), nullable=False, default="unknown", server_default="unknown"
    )
    last_positive_interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_contacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class Property(Base):
    __tablename__ = "properties"
    __table_args__ = (UniqueConstraint("org_id", "address_key"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    address_line: Mapped[str] = mapped_column(String(300), nullable=False)
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(2))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    # Lower-cased, whitespace-folded full address: the natural key.
    address_key: Mapped[str] = mapped_column(String(500), nullable=False)
    created_at: Mapped[datetime] = created()


class AppraisalOrder(Base):
    __tablename__ = "appraisal_orders"
    __table_args__ = (
        UniqueConstraint("org_id", "order_number"),
        Index("ix_appraisal_orders_org_client_ordered", "org_id", "client_id", "ordered_at"),
        Index("ix_appraisal_orders_org_contact", "org_id", "contact_id"),
    )

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    order_number: Mapped[str] = mapped_column(String(64), nullable=False)
    client_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    property_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("properties.id", ondelete="SET NULL")
    )
    property_address: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="ordered")
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fee: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()
