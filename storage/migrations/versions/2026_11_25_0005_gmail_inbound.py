"""gmail inbound: stored push notifications, message rows that wait for a fetch

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

`gmail_push_notifications` keeps every Pub/Sub push before it is answered (unique per
mailbox and Pub/Sub message id, so redeliveries insert nothing). `inbound_emails` gains
what the sync stores: the next fetch attempt (a partial index holds only rows that wait,
so the retry job's cost follows the work that is due), Gmail labels and size, Cc, and a
bounce's DSN blocks and embedded message headers, with the parser's defect notes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_WAITING_NOTIFICATION = sa.text("not_before IS NOT NULL")
_WAITING_MESSAGE = sa.text("next_attempt_at IS NOT NULL")
_NEW_INBOUND_LISTS = ("label_ids", "cc_emails", "delivery_status", "embedded_messages", "defects")


def upgrade() -> None:
    op.create_table(
        "gmail_push_notifications",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("gmail_account_id", _ID, nullable=False),
        sa.Column("pubsub_message_id", sa.String(length=128), nullable=False),
        sa.Column("email_address", sa.String(length=320), nullable=False),
        sa.Column("history_id", _ID, nullable=False),
        sa.Column("published_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_before", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("processed_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["gmail_account_id"],
            ["gmail_accounts.id"],
            name=op.f("fk_gmail_push_notifications_gmail_account_id_gmail_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_gmail_push_notifications_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gmail_push_notifications")),
        sa.UniqueConstraint(
            "gmail_account_id",
            "pubsub_message_id",
            name=op.f("uq_gmail_push_notifications_gmail_account_id_pubsub_message_id"),
        ),
    )
    op.create_index(
        "ix_gmail_push_notifications_created_at", "gmail_push_notifications", ["created_at"]
    )
    op.create_index(
        "ix_gmail_push_notifications_not_before",
        "gmail_push_notifications",
        ["not_before"],
        postgresql_where=_WAITING_NOTIFICATION,
        sqlite_where=_WAITING_NOTIFICATION,
    )

    with op.batch_alter_table("inbound_emails", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_attempt_at", storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("size_bytes", sa.Integer(), nullable=True))
        for name in _NEW_INBOUND_LISTS:
            batch_op.add_column(
                sa.Column(name, _JSON, server_default=sa.text("'[]'"), nullable=False)
            )
    op.create_index(
        "ix_inbound_emails_next_attempt_at",
        "inbound_emails",
        ["next_attempt_at"],
        postgresql_where=_WAITING_MESSAGE,
        sqlite_where=_WAITING_MESSAGE,
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_emails_next_attempt_at", table_name="inbound_emails")
    with op.batch_alter_table("inbound_emails", schema=None) as batch_op:
        for name in reversed(_NEW_INBOUND_LISTS):
            batch_op.drop_column(name)
        batch_op.drop_column("size_bytes")
        batch_op.drop_column("next_attempt_at")
    op.drop_index("ix_gmail_push_notifications_not_before", table_name="gmail_push_notifications")
    op.drop_index("ix_gmail_push_notifications_created_at", table_name="gmail_push_notifications")
    op.drop_table("gmail_push_notifications")
