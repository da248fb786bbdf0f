"""slack deferred calls: the work a Slack listener leaves for the worker after its ack

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

`slack_deferred_calls` holds each lazy listener call (the verified request body and the
function's name) from the ack until a worker has run it. A partial index covers only
rows that wait (`not_before` set), so claiming costs what is due, not what ran.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_deferred_calls",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("function", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_before", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_slack_deferred_calls_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_deferred_calls")),
    )
    with op.batch_alter_table("slack_deferred_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_slack_deferred_calls_not_before",
            ["not_before"],
            unique=False,
            postgresql_where=sa.text("not_before IS NOT NULL"),
            sqlite_where=sa.text("not_before IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("slack_deferred_calls", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_slack_deferred_calls_not_before",
            postgresql_where=sa.text("not_before IS NOT NULL"),
            sqlite_where=sa.text("not_before IS NOT NULL"),
        )

    op.drop_table("slack_deferred_calls")
