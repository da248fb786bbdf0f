"""inbound understanding: what the pipeline after `parsed` writes, and its settings

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Inbound messages gain the detectors' findings, who decided their classification and why,
the actions taken, the pipeline's attempts and lease, a re-classification date (set when
Claude was away), and links to their conversation and client. Enrollments remember the
message that stopped them; clients when they were re-engaged; campaigns what a reply does
(stop or pause); organizations their confidence threshold. Two indexes serve the
pipeline's claim and linking a reply by its sender.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plain ALTER TABLE on both databases, as 0007 and 0010 do: batch mode would rebuild the
# tables on SQLite, and dropping an old table cascades (foreign keys are on). SQLite keeps
# a REFERENCES clause given in ADD COLUMN, so the new foreign keys hold there too.

_JSON_OBJECT = sa.text("'{}'")
_JSON_LIST = sa.text("'[]'")


def _add_fk_column(table: str, name: str, target: str) -> None:
    """Add a nullable BIGINT column referencing `target.id`, ON DELETE SET NULL.

    Alembic cannot add a constraint to an SQLite table without rebuilding it, but SQLite
    accepts the REFERENCES clause inside ADD COLUMN, so it is written out there.
    """
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN {name} INTEGER "
            f"REFERENCES {target} (id) ON DELETE SET NULL"
        )
        return
    op.add_column(
        table,
        sa.Column(
            name,
            storage.types.BigId,
            sa.ForeignKey(f"{target}.id", ondelete="SET NULL", name=f"fk_{table}_{name}_{target}"),
            nullable=True,
        ),
    )


def upgrade() -> None:
    json = storage.types.JsonType
    op.add_column(
        "inbound_emails", sa.Column("detection", json, nullable=False, server_default=_JSON_OBJECT)
    )
    op.add_column("inbound_emails", sa.Column("decided_detail", sa.String(200), nullable=True))
    op.add_column(
        "inbound_emails",
        sa.Column(
            "injection_attempt", sa.Boolean(), nullable=False, server_default=sa.text("false")
        ),
    )
    op.add_column("inbound_emails", sa.Column("classification_reason", sa.Text(), nullable=True))
    op.add_column(
        "inbound_emails", sa.Column("notes", json, nullable=False, server_default=_JSON_LIST)
    )
    op.add_column(
        "inbound_emails", sa.Column("actions", json, nullable=False, server_default=_JSON_LIST)
    )
    op.add_column(
        "inbound_emails",
        sa.Column("pipeline_attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "inbound_emails",
        sa.Column("reclassify_at", storage.types.UTCDateTime(), nullable=True),
    )
    _add_fk_column("inbound_emails", "conversation_id", "email_conversations")
    _add_fk_column("inbound_emails", "client_id", "clients")
    op.create_index(
        "ix_inbound_emails_status_next_attempt_at",
        "inbound_emails",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_email_sends_org_id_to_email_sent_at",
        "email_sends",
        ["org_id", "to_email", "sent_at"],
    )
    _add_fk_column("enrollments", "stop_email_id", "inbound_emails")
    op.add_column("clients", sa.Column("re_engaged_at", storage.types.UTCDateTime(), nullable=True))
    op.add_column(
        "marketing_campaigns",
        sa.Column("on_reply", sa.String(8), nullable=False, server_default=sa.text("'stop'")),
    )
    op.add_column(
        "organizations",
        sa.Column("classify_threshold", sa.Float(), nullable=False, server_default=sa.text("0.7")),
    )


def downgrade() -> None:
    op.drop_column("organizations", "classify_threshold")
    op.drop_column("marketing_campaigns", "on_reply")
    op.drop_column("clients", "re_engaged_at")
    op.drop_column("enrollments", "stop_email_id")
    op.drop_index("ix_email_sends_org_id_to_email_sent_at", table_name="email_sends")
    op.drop_index("ix_inbound_emails_status_next_attempt_at", table_name="inbound_emails")
    for column in (
        "client_id",
        "conversation_id",
        "reclassify_at",
        "pipeline_attempts",
        "actions",
        "notes",
        "classification_reason",
        "injection_attempt",
        "decided_detail",
        "detection",
    ):
        op.drop_column("inbound_emails", column)
