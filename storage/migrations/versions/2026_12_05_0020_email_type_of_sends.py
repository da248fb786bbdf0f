"""email type of sends: each outbox row says what kind of email it is

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05

- `email_sends.email_type` (newsletter, campaign, follow_up, announcement, transactional;
  null for rows written before): the send-time check refuses a type the contact turned
  off in `contacts.email_preferences`, and the List-Unsubscribe link of the email acts on
  that type (domain/email_preferences.py). A queued row can wait hours for its mailbox's
  daily cap, so the type must be on the row itself: the card it came from may be gone and
  a newsletter has none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("email_sends", sa.Column("email_type", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("email_sends", "email_type")
