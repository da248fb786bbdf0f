"""analytics and digests: subscriptions, posts, the stale-client ranking, tracking

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

Issue 14 (docs/digest.md, docs/analytics.md):

- `digest_subscriptions`: a channel's daily or weekly digest, its local time and zone,
  its filters (`scope_key`), and `next_run_at`, the UTC instant the scheduler claims it at.
- `digest_posts`: one digest to post, unique per (subscription, period start) so each
  period is posted once whatever the number of workers; leased like the outbox.
- `client_rankings`: the daily ranking of stale clients worth a call.
- `email_tracking_events`: opens and clicks of tracked sends, one row per (send, kind,
  link, bot or person), so a replayed token is counted once.
- `organizations.analytics_settings` (lead scoring, stale targeting, tracking; empty: the
  defaults, tracking off), `contacts.lead_score_at`, `email_sends.tracked`.
- Indexes for the windowed counts of analytics and the digest: sends by (org, sent_at)
  and (campaign, sent_at), engagement events by (org, event, occurred_at).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "client_rankings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("days_since_order", sa.Integer(), nullable=True),
        sa.Column("past_order_rate", sa.Float(), nullable=False),
        sa.Column("engagement_decay", sa.Float(), nullable=False),
        sa.Column(
            "best_contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("computed_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["best_contact_id"],
            ["contacts.id"],
            name=op.f("fk_client_rankings_best_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_rankings_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_client_rankings_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_rankings")),
        sa.UniqueConstraint(
            "org_id", "client_id", name=op.f("uq_client_rankings_org_id_client_id")
        ),
    )
    with op.batch_alter_table("client_rankings", schema=None) as batch_op:
        batch_op.create_index("ix_client_rankings_org_id_rank", ["org_id", "rank"], unique=False)

    op.create_table(
        "digest_subscriptions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("channel_name", sa.String(length=200), nullable=True),
        sa.Column("frequency", sa.String(length=8), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("local_time", sa.String(length=5), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("scope_key", sa.String(length=64), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "rep_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("next_run_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["marketing_campaigns.id"],
            name=op.f("fk_digest_subscriptions_campaign_id_marketing_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_digest_subscriptions_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_digest_subscriptions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rep_user_id"],
            ["users.id"],
            name=op.f("fk_digest_subscriptions_rep_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_subscriptions")),
        sa.UniqueConstraint(
            "org_id",
            "channel_id",
            "frequency",
            "scope_key",
            name=op.f("uq_digest_subscriptions_org_id_channel_id_frequency_scope_key"),
        ),
    )
    with op.batch_alter_table("digest_subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_digest_subscriptions_next_run_at", ["next_run_at"], unique=False)

    op.create_table(
        "digest_posts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "subscription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("frequency", sa.String(length=8), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("period_start", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "rep_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("requested_by", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_before", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("file_id", sa.String(length=32), nullable=True),
        sa.Column("slack_ts", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "figures",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("posted_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["marketing_campaigns.id"],
            name=op.f("fk_digest_posts_campaign_id_marketing_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_digest_posts_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rep_user_id"],
            ["users.id"],
            name=op.f("fk_digest_posts_rep_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["digest_subscriptions.id"],
            name=op.f("fk_digest_posts_subscription_id_digest_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_posts")),
        sa.UniqueConstraint(
            "subscription_id",
            "period_start",
            name=op.f("uq_digest_posts_subscription_id_period_start"),
        ),
    )
    with op.batch_alter_table("digest_posts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_digest_posts_org_id_created_at", ["org_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_digest_posts_status_not_before", ["status", "not_before"], unique=False
        )

    op.create_table(
        "email_tracking_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "email_send_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("link_index", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("by_bot", sa.Boolean(), nullable=False),
        sa.Column("bot_reason", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("first_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_email_tracking_events_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["email_send_id"],
            ["email_sends.id"],
            name=op.f("fk_email_tracking_events_email_send_id_email_sends"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_email_tracking_events_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_tracking_events")),
        sa.UniqueConstraint(
            "email_send_id",
            "kind",
            "link_index",
            "by_bot",
            name=op.f("uq_email_tracking_events_email_send_id_kind_link_index_by_bot"),
        ),
    )
    with op.batch_alter_table("email_tracking_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_email_tracking_events_org_id_first_at", ["org_id", "first_at"], unique=False
        )

    # Existing tables change in place (a batch copy on SQLite would cascade the drop of the
    # old table to the rows that refer to it).
    op.create_index(
        "ix_contact_engagement_org_event_at",
        "contact_engagement_history",
        ["org_id", "event", "occurred_at"],
    )
    op.add_column(
        "contacts", sa.Column("lead_score_at", storage.types.UTCDateTime(), nullable=True)
    )
    op.add_column(
        "email_sends", sa.Column("tracked", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index("ix_email_sends_campaign_id_sent_at", "email_sends", ["campaign_id", "sent_at"])
    op.create_index("ix_email_sends_org_id_sent_at", "email_sends", ["org_id", "sent_at"])
    op.add_column(
        "organizations",
        sa.Column(
            "analytics_settings",
            storage.types.JsonType,
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    # Plain drops (SQLite 3.35+ drops columns in place): a batch copy of these tables would
    # cascade the drop of the old table to the rows that refer to it.
    op.drop_column("organizations", "analytics_settings")
    op.drop_index("ix_email_sends_org_id_sent_at", table_name="email_sends")
    op.drop_index("ix_email_sends_campaign_id_sent_at", table_name="email_sends")
    op.drop_column("email_sends", "tracked")
    op.drop_column("contacts", "lead_score_at")
    op.drop_index("ix_contact_engagement_org_event_at", table_name="contact_engagement_history")
    op.drop_table("email_tracking_events")
    op.drop_table("digest_posts")
    op.drop_table("digest_subscriptions")
    op.drop_table("client_rankings")
