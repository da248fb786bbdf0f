"""worker heartbeats: each process running the background work says it is alive

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04

- `worker_heartbeats` (one row per running `salesbot worker` or `salesbot serve`): its
  lease name, host and pid, when it started and when it last beat (every few seconds, by
  a periodic job). The row is deleted when the process stops; `/readyz` answers 503 when
  the newest beat is too old, i.e. when no background work runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("beat_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
