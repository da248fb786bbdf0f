"""The table of each organization's latest lead-scoring and stale-client ranking run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, org_fk, pk
from storage.types import UTCDateTime


class TargetingRun(Base):
    """One row per organization: when its contacts were last scored and its stale clients
    ranked (`computed_at`; the rows of `client_rankings` carry the same time), when a run
    last started (`attempted_at`: the hourly check's claim), and why the last one failed.

    It tells "never computed" from "computed, and no client is stale", which
    `client_rankings` alone cannot (an empty ranking has no row), and keeps the busiest
    client's order count, the reference an event's rescoring scales order volumes by.
    """

    __tablename__ = "targeting_runs"
    __table_args__ = (UniqueConstraint("org_id"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    busiest_client_orders: Mapped[int] = counter()
    contacts_scored: Mapped[int] = counter()
    clients_considered: Mapped[int] = counter()
    clients_ranked: Mapped[int] = counter()
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
