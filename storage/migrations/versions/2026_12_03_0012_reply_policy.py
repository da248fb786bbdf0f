"""reply policy: each organization's auto-reply policy in its own table

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

`org_reply_policies` holds at most one row per organization (its primary key is the
organization): whether auto-replies are on, the categories they may answer, the confidence
they need, who changed it and when. No row means the defaults (off), so nothing is
back-filled. A table of its own rather than columns on `organizations`: the policy grows as
a unit (the categories are a list, the audit columns belong to it, later settings join it),
and `organizations` stays the narrow row every request reads.

Only CREATE TABLE: no existing table is altered, so SQLite rebuilds nothing (see 0011 for
why batch mode is avoided there) and both foreign keys are declared inline.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "org_reply_policies",
        sa.Column("org_id", storage.types.BigId, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column(
            "categories", storage.types.JsonType, nullable=False, server_default=sa.text("'[]'")
        ),
        sa.Column("min_confidence", sa.Float(), nullable=False, server_default=sa.text("0.95")),
        sa.Column("updated_by", storage.types.BigId, nullable=True),
        sa.Column("updated_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_org_reply_policies_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"],
            ["users.id"],
            name=op.f("fk_org_reply_policies_updated_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_reply_policies")),
    )


def downgrade() -> None:
    op.drop_table("org_reply_policies")
