"""targeting: each organization's latest lead-scoring and stale-client ranking run

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

- `targeting_runs` (one row per organization): when the daily run last scored every
  contact and ranked the stale clients (`computed_at`), when one last started
  (`attempted_at`: the hourly check claims an organization by it, and a failed run is
  tried again an hour later), the busiest client's orders of the last year (the reference
  an engagement event's rescoring scales order volume by), the run's counts and duration,
  and why the last run failed. `client_rankings` alone cannot tell an organization never
  ranked from one whose ranking is empty (no stale client: no row).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "targeting_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("computed_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempted_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("busiest_client_orders", sa.Integer(), server_default="0", nullable=False),
        sa.Column("contacts_scored", sa.Integer(), server_default="0", nullable=False),
        sa.Column("clients_considered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("clients_ranked", sa.Integer(), server_default="0", nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_targeting_runs_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_targeting_runs")),
        sa.UniqueConstraint("org_id", name=op.f("uq_targeting_runs_org_id")),
    )


def downgrade() -> None:
    op.drop_table("targeting_runs")
