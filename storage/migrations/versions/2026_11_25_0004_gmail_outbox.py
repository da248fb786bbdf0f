"""gmail outbox: what exactly-once sending, throttles and the OAuth consent need

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

- email_sends becomes the outbox: the message is stored (sender, recipient name, bodies,
  threading headers, whether it is a campaign email) before Gmail is called, and a row
  being sent carries a lease (`claimed_by`, `claimed_until`) so a crashed attempt is
  reconciled, never sent twice. Indexes serve the daily-cap count per mailbox and the
  claim of due rows.
- gmail_accounts gets the spacing reservation (`next_send_at`), the hold of a send in flight
  (`sending_until`: one send at a time per mailbox) and why it was disconnected.
- gmail_oauth_states keeps each consent in progress (user, PKCE verifier) for one callback.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "gmail_oauth_states",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("code_verifier_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=500), nullable=False),
        sa.Column("expires_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("used_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_gmail_oauth_states_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_gmail_oauth_states_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gmail_oauth_states")),
        sa.UniqueConstraint("nonce", name=op.f("uq_gmail_oauth_states_nonce")),
    )
    with op.batch_alter_table("gmail_oauth_states", schema=None) as batch_op:
        batch_op.create_index("ix_gmail_oauth_states_expires_at", ["expires_at"], unique=False)

    with op.batch_alter_table("email_sends", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_user_id", _ID, nullable=True))
        batch_op.add_column(sa.Column("from_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("to_name", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("body_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("body_html", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("in_reply_to", sa.String(length=998), nullable=True))
        batch_op.add_column(
            sa.Column("references", _JSON, server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "campaign_email", sa.Boolean(), server_default=sa.text("(true)"), nullable=False
            )
        )
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", storage.types.UTCDateTime(), nullable=True))
        batch_op.create_index(
            "ix_email_sends_gmail_account_id_sent_at",
            ["gmail_account_id", "sent_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_email_sends_status_not_before", ["status", "not_before"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_email_sends_sender_user_id_users"),
            "users",
            ["sender_user_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("gmail_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_send_at", storage.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("sending_until", storage.types.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("disconnected_at", storage.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("disconnected_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gmail_accounts", schema=None) as batch_op:
        batch_op.drop_column("disconnected_reason")
        batch_op.drop_column("disconnected_at")
        batch_op.drop_column("sending_until")
        batch_op.drop_column("next_send_at")

    with op.batch_alter_table("email_sends", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_email_sends_sender_user_id_users"), type_="foreignkey"
        )
        batch_op.drop_index("ix_email_sends_status_not_before")
        batch_op.drop_index("ix_email_sends_gmail_account_id_sent_at")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("campaign_email")
        batch_op.drop_column("references")
        batch_op.drop_column("in_reply_to")
        batch_op.drop_column("body_html")
        batch_op.drop_column("body_text")
        batch_op.drop_column("to_name")
        batch_op.drop_column("from_email")
        batch_op.drop_column("sender_user_id")

    with op.batch_alter_table("gmail_oauth_states", schema=None) as batch_op:
        batch_op.drop_index("ix_gmail_oauth_states_expires_at")
    op.drop_table("gmail_oauth_states")
