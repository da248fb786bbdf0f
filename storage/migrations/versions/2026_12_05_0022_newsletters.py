"""newsletters: a newsletter, its issues, and the issue each outbox row belongs to

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05

- `newsletter`: a newsletter of the organization: its name, description, the users whose
  connected mailboxes send it, the share of each mailbox's daily cap it may use (1-100,
  default 50), the Slack channel of its preview cards, who made it.
- `newsletter_issues`: an issue: its title, subject/HTML/text templates (Jinja2, run in
  the sandbox), its own variables, its status (draft, in_review, scheduled, sending,
  sent, rejected, cancelled), its preview card, its audience and sending plan, and the
  planning's cursor and lease (a crash in the middle of planning is carried on, never
  planned twice).
- `email_sends.newsletter_issue_id` (SET NULL) and a unique index on
  (newsletter_issue_id, contact_id) where it is set: one email per subscriber per issue.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name,
        storage.types.UTCDateTime(timezone=True),
        server_default=sa.func.current_timestamp(),
        nullable=False,
    )


def _user_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], name=op.f(f"fk_{table}_{column}_users"), ondelete="SET NULL"
    )


def upgrade() -> None:
    op.create_table(
        "newsletter",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("sender_user_ids", _JSON, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("cap_share_percent", sa.Integer(), server_default="50", nullable=False),
        sa.Column("slack_channel_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", _ID, nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "cap_share_percent BETWEEN 1 AND 100", name=op.f("ck_newsletter_cap_share_percent")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_newsletter_org_id_organizations"),
            ondelete="CASCADE",
        ),
        _user_fk("newsletter", "created_by"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter")),
    )
    op.create_index("ix_newsletter_org_id", "newsletter", ["org_id"], unique=False)

    op.create_table(
        "newsletter_issues",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("newsletter_id", _ID, nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("subject_template", sa.String(length=998), nullable=False),
        sa.Column("html_template", sa.Text(), nullable=False),
        sa.Column("text_template", sa.Text(), nullable=False),
        sa.Column("variables", _JSON, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("slack_channel_id", sa.String(length=32), nullable=True),
        sa.Column("slack_message_ts", sa.String(length=32), nullable=True),
        sa.Column("card_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("card", _JSON, nullable=True),
        sa.Column("audience_count", sa.Integer(), nullable=True),
        sa.Column("planned_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("planned_start", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("planned_finish", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("plan", _JSON, nullable=True),
        sa.Column("plan_cursor", _ID, server_default="0", nullable=False),
        sa.Column("plan_lease_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("planned_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("submitted_by", _ID, nullable=True),
        sa.Column("approved_by", _ID, nullable=True),
        sa.Column("approved_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rejected_reason", sa.Text(), nullable=True),
        sa.Column("sent_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", _ID, nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('draft', 'in_review', 'scheduled', 'sending', 'sent', 'rejected',"
            " 'cancelled')",
            name=op.f("ck_newsletter_issues_status"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_newsletter_issues_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_newsletter_issues_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        _user_fk("newsletter_issues", "submitted_by"),
        _user_fk("newsletter_issues", "approved_by"),
        _user_fk("newsletter_issues", "created_by"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_issues")),
    )
    op.create_index(
        "ix_newsletter_issues_org_id_newsletter_id",
        "newsletter_issues",
        ["org_id", "newsletter_id"],
        unique=False,
    )
    op.create_index("ix_newsletter_issues_status", "newsletter_issues", ["status"], unique=False)

    # Plain ALTER TABLE, as in 0009: batch mode would rebuild `email_sends` on SQLite.
    if op.get_bind().dialect.name == "sqlite":
        # Alembic adds a column's foreign key as a separate ALTER, which SQLite lacks.
        op.execute(
            "ALTER TABLE email_sends ADD COLUMN newsletter_issue_id INTEGER CONSTRAINT "
            "fk_email_sends_newsletter_issue_id_newsletter_issues "
            "REFERENCES newsletter_issues (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("email_sends", sa.Column("newsletter_issue_id", sa.BigInteger()))
        op.create_foreign_key(
            "fk_email_sends_newsletter_issue_id_newsletter_issues",
            "email_sends",
            "newsletter_issues",
            ["newsletter_issue_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(
        "uq_email_sends_newsletter_issue_id_contact_id",
        "email_sends",
        ["newsletter_issue_id", "contact_id"],
        unique=True,
        postgresql_where=sa.text("newsletter_issue_id IS NOT NULL"),
        sqlite_where=sa.text("newsletter_issue_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_email_sends_newsletter_issue_id_contact_id", table_name="email_sends")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(
            "fk_email_sends_newsletter_issue_id_newsletter_issues",
            "email_sends",
            type_="foreignkey",
        )
    op.drop_column("email_sends", "newsletter_issue_id")
    op.drop_index("ix_newsletter_issues_status", table_name="newsletter_issues")
    op.drop_index("ix_newsletter_issues_org_id_newsletter_id", table_name="newsletter_issues")
    op.drop_table("newsletter_issues")
    op.drop_index("ix_newsletter_org_id", table_name="newsletter")
    op.drop_table("newsletter")
