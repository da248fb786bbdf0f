"""job status says what happens: the latest failure, who cancelled, withdrawn cards

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

A job runs until its cards are decided; cancelling it withdraws the cards not yet sent.
`jobs.last_error` keeps the latest failure beside `errors_count` (a card not posted, an
email not sent, planning stopped), `jobs.cancelled_by` who cancelled it (shown on the
withdrawn cards), `cards.withdrawn_reason` why a card was withdrawn. The index on a job's
cards gains the state: "is any card of this job still undecided?" is asked after every
decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both databases, as in 0007: batch mode would rebuild `jobs` on
# SQLite, and dropping the old table cascades to its tasks, enrollments and cards.


def upgrade() -> None:
    op.add_column("jobs", sa.Column("last_error", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # Alembic adds a column's foreign key as a separate ALTER, which SQLite lacks.
        op.execute(
            "ALTER TABLE jobs ADD COLUMN cancelled_by INTEGER CONSTRAINT "
            "fk_jobs_cancelled_by_users REFERENCES users (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("jobs", sa.Column("cancelled_by", sa.BigInteger(), nullable=True))
        op.create_foreign_key(
            "fk_jobs_cancelled_by_users",
            "jobs",
            "users",
            ["cancelled_by"],
            ["id"],
            ondelete="SET NULL",
        )
    op.add_column("cards", sa.Column("withdrawn_reason", sa.Text(), nullable=True))
    op.create_index(
        "ix_cards_org_id_job_id_state", "cards", ["org_id", "job_id", "state"], unique=False
    )
    op.drop_index("ix_cards_org_id_job_id", table_name="cards")


def downgrade() -> None:
    op.create_index("ix_cards_org_id_job_id", "cards", ["org_id", "job_id"], unique=False)
    op.drop_index("ix_cards_org_id_job_id_state", table_name="cards")
    op.drop_column("cards", "withdrawn_reason")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("fk_jobs_cancelled_by_users", "jobs", type_="foreignkey")
    op.drop_column("jobs", "cancelled_by")
    op.drop_column("jobs", "last_error")
