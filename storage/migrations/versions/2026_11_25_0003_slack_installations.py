"""slack installations and OAuth states

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Multi-workspace OAuth install: the installation store (tokens encrypted at rest, one row
per install, the latest of a workspace wins) and the one-time OAuth `state` values.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "slack_installations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=True),
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=True),
        sa.Column("enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("enterprise_name", sa.String(length=200), nullable=True),
        sa.Column("enterprise_url", sa.String(length=200), nullable=True),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("team_name", sa.String(length=200), nullable=True),
        sa.Column(
            "is_enterprise_install", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
        ),
        sa.Column("token_type", sa.String(length=32), nullable=True),
        sa.Column("installer_user_id", sa.String(length=32), nullable=True),
        sa.Column("bot_id", sa.String(length=32), nullable=True),
        sa.Column("bot_user_id", sa.String(length=32), nullable=True),
        sa.Column("bot_scopes", _JSON, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("bot_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("bot_refresh_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("bot_token_expires_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("user_scopes", _JSON, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("user_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("user_refresh_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("user_token_expires_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("incoming_webhook_url_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("incoming_webhook_channel", sa.String(length=200), nullable=True),
        sa.Column("incoming_webhook_channel_id", sa.String(length=32), nullable=True),
        sa.Column("incoming_webhook_configuration_url", sa.String(length=500), nullable=True),
        sa.Column("installed_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_slack_installations_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_installations")),
    )
    with op.batch_alter_table("slack_installations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_slack_installations_enterprise_team_installed",
            ["enterprise_id", "team_id", "installed_at"],
            unique=False,
        )

    op.create_table(
        "slack_oauth_states",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=True),
        sa.Column("state", sa.String(length=200), nullable=False),
        sa.Column("expire_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_slack_oauth_states_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_oauth_states")),
        sa.UniqueConstraint("state", name=op.f("uq_slack_oauth_states_state")),
    )
    with op.batch_alter_table("slack_oauth_states", schema=None) as batch_op:
        batch_op.create_index("ix_slack_oauth_states_expire_at", ["expire_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slack_oauth_states", schema=None) as batch_op:
        batch_op.drop_index("ix_slack_oauth_states_expire_at")
    op.drop_table("slack_oauth_states")

    with op.batch_alter_table("slack_installations", schema=None) as batch_op:
        batch_op.drop_index("ix_slack_installations_enterprise_team_installed")
    op.drop_table("slack_installations")
