"""email_campaigns: the email side of a campaign, one row per campaign and step

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05

- `email_campaigns`: a campaign's cadence step (null: sends outside a cadence), the
  distinct subject lines sent, and its sent, delivered, bounced, unsubscribed and replied
  counts over the campaign's life with its first and last send; unique per campaign and
  step. A materialized copy of the analytics read model (domain/email_campaigns.py).

No data is copied here: the rows are computed by the analytics read model, which lives in
the application, not in a migration. The first sweep after the upgrade
(jobs/email_campaigns.py) writes every campaign that has sent email, and either REST route
writes the rows it answers with before answering.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "email_campaigns",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column(
            "subjects",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column("sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delivered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("bounced", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unsubscribed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("replied", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_sent_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["marketing_campaigns.id"],
            name=op.f("fk_email_campaigns_campaign_id_marketing_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_email_campaigns_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_campaigns")),
        sa.UniqueConstraint(
            "campaign_id", "step", name=op.f("uq_email_campaigns_campaign_id_step")
        ),
    )


def downgrade() -> None:
    op.drop_table("email_campaigns")
