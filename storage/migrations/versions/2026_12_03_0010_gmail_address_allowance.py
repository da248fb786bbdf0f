"""gmail address allowance: another mailbox address an admin lets a user connect

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

A rep connects the Gmail mailbox of their own address; an admin can allow one other
address per user (a shared inbox, an alias). Who allowed it and when are kept beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both databases, as 0007 does: batch mode would rebuild `users` on
# SQLite, and dropping the old table cascades (foreign keys are on).


def upgrade() -> None:
    op.add_column("users", sa.Column("gmail_address_allowed", sa.String(320), nullable=True))
    op.add_column("users", sa.Column("gmail_address_allowed_by", sa.String(320), nullable=True))
    op.add_column(
        "users",
        sa.Column("gmail_address_allowed_at", storage.types.UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("users", "gmail_address_allowed_at")
    op.drop_column("users", "gmail_address_allowed_by")
    op.drop_column("users", "gmail_address_allowed")
