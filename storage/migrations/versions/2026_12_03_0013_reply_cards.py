"""reply cards: routing, snoozing, the replies inbox job, and learning from reps

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

- `organizations.triage_channel_id`: where reply cards go when neither the rep who owns the
  thread nor the campaign's review channel can take them (`/triage set #channel`).
- `jobs.kind`: `campaign` (every job so far) or `inbox`, the one job per organization that
  holds the reply cards answering no campaign job (a partial unique index keeps it one).
- `cards.snoozed_until`: a snoozed card comes back (posted again) at that time; a partial
  index serves the sweep that brings them back.
- `cards` gain a unique partial index on (org_id, inbound_email_id): one inbound message
  never makes two cards, whatever two workers race.
- `contacts.paused_until` / `pause_reason`: "not now, try me in January" pauses the person,
  not only the enrollment that reached them.
- `classifier_corrections`: a rep's re-label of a message (who, before, after, which).
- `rule_proposals`: a rule proposed after identical corrections for a sender or a domain,
  accepted (it becomes a `classifier_rules` row) or dismissed by an admin.

Plain ALTER TABLE and CREATE TABLE only, as 0011 and 0012 (no batch rebuild on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _partial(where: str) -> dict[str, Any]:
    # Any: create_index takes dialect options as **kw, whose type mypy reads from its
    # named parameters.
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    op.add_column("organizations", sa.Column("triage_channel_id", sa.String(32), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("kind", sa.String(16), nullable=False, server_default=sa.text("'campaign'")),
    )
    op.create_index(
        "ux_jobs_org_id_inbox", "jobs", ["org_id"], unique=True, **_partial("kind = 'inbox'")
    )
    op.add_column("cards", sa.Column("snoozed_until", storage.types.UTCDateTime(), nullable=True))
    op.create_index(
        "ix_cards_snoozed_until",
        "cards",
        ["snoozed_until"],
        **_partial("snoozed_until IS NOT NULL"),
    )
    op.create_index(
        "ux_cards_org_id_inbound_email_id",
        "cards",
        ["org_id", "inbound_email_id"],
        unique=True,
        **_partial("inbound_email_id IS NOT NULL"),
    )
    op.add_column("contacts", sa.Column("paused_until", storage.types.UTCDateTime(), nullable=True))
    op.add_column("contacts", sa.Column("pause_reason", sa.String(64), nullable=True))
    op.create_table(
        "classifier_corrections",
        sa.Column("id", storage.types.BigId, autoincrement=True, nullable=False),
        sa.Column("org_id", storage.types.BigId, nullable=False),
        sa.Column("inbound_email_id", storage.types.BigId, nullable=False),
        sa.Column("card_id", storage.types.BigId, nullable=True),
        sa.Column("user_id", storage.types.BigId, nullable=True),
        sa.Column("sender_email", sa.String(320), nullable=True),
        sa.Column("sender_domain", sa.String(255), nullable=True),
        sa.Column("before", storage.types.JsonType, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("after", storage.types.JsonType, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_classifier_corrections_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inbound_email_id"],
            ["inbound_emails.id"],
            name=op.f("fk_classifier_corrections_inbound_email_id_inbound_emails"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["cards.id"],
            name=op.f("fk_classifier_corrections_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_classifier_corrections_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classifier_corrections")),
    )
    op.create_index(
        "ix_classifier_corrections_org_id_created_at",
        "classifier_corrections",
        ["org_id", "created_at"],
    )
    op.create_index(
        "ix_classifier_corrections_org_id_sender_domain",
        "classifier_corrections",
        ["org_id", "sender_domain"],
    )
    op.create_table(
        "rule_proposals",
        sa.Column("id", storage.types.BigId, autoincrement=True, nullable=False),
        sa.Column("org_id", storage.types.BigId, nullable=False),
        sa.Column("rule_type", sa.String(32), nullable=False),
        sa.Column("pattern", sa.String(500), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("corrections", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'open'")),
        sa.Column("rule_id", storage.types.BigId, nullable=True),
        sa.Column("decided_by", storage.types.BigId, nullable=True),
        sa.Column("decided_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("slack_channel_id", sa.String(32), nullable=True),
        sa.Column("slack_message_ts", sa.String(32), nullable=True),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            storage.types.UTCDateTime(),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_rule_proposals_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["classifier_rules.id"],
            name=op.f("fk_rule_proposals_rule_id_classifier_rules"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
            name=op.f("fk_rule_proposals_decided_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_proposals")),
        sa.UniqueConstraint(
            "org_id",
            "rule_type",
            "pattern",
            "category",
            name=op.f("uq_rule_proposals_org_id_rule_type_pattern_category"),
        ),
    )


def downgrade() -> None:
    op.drop_table("rule_proposals")
    op.drop_index(
        "ix_classifier_corrections_org_id_sender_domain", table_name="classifier_corrections"
    )
    op.drop_index(
        "ix_classifier_corrections_org_id_created_at", table_name="classifier_corrections"
    )
    op.drop_table("classifier_corrections")
    op.drop_column("contacts", "pause_reason")
    op.drop_column("contacts", "paused_until")
    op.drop_index("ux_cards_org_id_inbound_email_id", table_name="cards")
    op.drop_index("ix_cards_snoozed_until", table_name="cards")
    op.drop_column("cards", "snoozed_until")
    op.drop_index("ux_jobs_org_id_inbox", table_name="jobs")
    op.drop_column("jobs", "kind")
    op.drop_column("organizations", "triage_channel_id")
