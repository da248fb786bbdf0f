"""reputation: public reviews, their response templates and escalation rules

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04

- `reviews`: a review of the organization on Google, Yelp, Facebook, Zillow or Trustpilot
  (unique per organization, platform and the site's id), its sentiment and who read it,
  its escalation, the response a person approved, and its cards.
- `review_response_templates`: Jinja2 responses per scenario (positive, neutral,
  negative, legal).
- `review_escalation_rules`: keyword, rating, staff or legal rules routed to the account
  manager, legal or a user.
- `reputation_settings`: per organization, the account manager, legal, the channel of
  response cards, the firm's name, and the review webhook's secret (encrypted).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review_response_templates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scenario", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_review_response_templates_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_response_templates")),
    )
    op.create_index(
        "ix_review_response_templates_org_id", "review_response_templates", ["org_id"], unique=False
    )

    op.create_table(
        "reputation_settings",
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "account_manager_user_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "legal_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("firm_name", sa.String(length=200), nullable=False),
        sa.Column("webhook_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_manager_user_id"],
            ["users.id"],
            name=op.f("fk_reputation_settings_account_manager_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["legal_user_id"],
            ["users.id"],
            name=op.f("fk_reputation_settings_legal_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_reputation_settings_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_reputation_settings")),
    )
    op.create_table(
        "review_escalation_rules",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("pattern", sa.String(length=500), nullable=False),
        sa.Column("route_to", sa.String(length=24), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('keyword', 'rating', 'staff', 'legal')",
            name=op.f("ck_review_escalation_rules_kind"),
        ),
        sa.CheckConstraint(
            "route_to IN ('account_manager', 'legal', 'user')",
            name=op.f("ck_review_escalation_rules_route_to"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_review_escalation_rules_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_review_escalation_rules_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_escalation_rules")),
    )
    op.create_index(
        "ix_review_escalation_rules_org_id", "review_escalation_rules", ["org_id"], unique=False
    )

    op.create_table(
        "reviews",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("posted_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at",
            storage.types.UTCDateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("sentiment", sa.String(length=16), nullable=False),
        sa.Column("sentiment_score", sa.Float(), nullable=False),
        sa.Column("sentiment_source", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("escalated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("escalation_reason", sa.Text(), nullable=True),
        sa.Column("escalated_to", sa.String(length=24), nullable=True),
        sa.Column(
            "escalated_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("response_text", sa.Text(), nullable=True),
        sa.Column("responded_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "responded_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "response_card_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "escalation_card_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.CheckConstraint(
            "platform IN ('google', 'yelp', 'facebook', 'zillow', 'trustpilot')",
            name=op.f("ck_reviews_platform"),
        ),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_reviews_rating")),
        sa.CheckConstraint(
            "sentiment_score BETWEEN -1 AND 1", name=op.f("ck_reviews_sentiment_score")
        ),
        sa.ForeignKeyConstraint(
            ["escalated_user_id"],
            ["users.id"],
            name=op.f("fk_reviews_escalated_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["escalation_card_id"],
            ["cards.id"],
            name=op.f("fk_reviews_escalation_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_reviews_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["responded_by"],
            ["users.id"],
            name=op.f("fk_reviews_responded_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["response_card_id"],
            ["cards.id"],
            name=op.f("fk_reviews_response_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint(
            "org_id", "platform", "external_id", name=op.f("uq_reviews_org_id_platform_external_id")
        ),
    )
    op.create_index(
        "ix_reviews_org_id_received_at", "reviews", ["org_id", "received_at"], unique=False
    )
    op.create_index(
        "ix_reviews_org_id_response_card_id",
        "reviews",
        ["org_id", "response_card_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_table("review_escalation_rules")
    op.drop_table("reputation_settings")
    op.drop_table("review_response_templates")
