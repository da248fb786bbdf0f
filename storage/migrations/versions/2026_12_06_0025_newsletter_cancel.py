"""newsletter cancel: who cancelled an issue's sending, when, and how many went out

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06

- `newsletter_issues.cancelled_by`, `cancelled_at`: Cancel sending (REST or the card's
  button) of a scheduled or sending issue.
- `newsletter_issues.sent_before_cancel`, `withdrawn_count`: the counts at that moment (the
  issue's sent rows, and its queued rows withdrawn: `failed` with the withdrawn reason).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("newsletter_issues") as batch:
        batch.add_column(sa.Column("cancelled_by", _ID, nullable=True))
        batch.add_column(
            sa.Column("cancelled_at", storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("sent_before_cancel", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("withdrawn_count", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_newsletter_issues_cancelled_by_users"),
            "users",
            ["cancelled_by"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("newsletter_issues") as batch:
        batch.drop_constraint(op.f("fk_newsletter_issues_cancelled_by_users"), type_="foreignkey")
        batch.drop_column("withdrawn_count")
        batch.drop_column("sent_before_cancel")
        batch.drop_column("cancelled_at")
        batch.drop_column("cancelled_by")
