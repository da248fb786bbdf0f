"""job request key: the request that created a job, so that running it again finds the job

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

A Slack command's work runs at least once (stored before the ack, retried after a crash),
so `/campaign launch` records its trigger id on the job it creates; a second run of the
same command finds that job instead of launching the campaign again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both databases (SQLite has DROP COLUMN since 3.35): batch mode
# would rebuild `jobs` on SQLite, and dropping the old table cascades to its tasks and
# enrollments (foreign keys are on).


def upgrade() -> None:
    op.add_column("jobs", sa.Column("request_key", sa.String(length=100), nullable=True))
    op.create_index("ux_jobs_org_id_request_key", "jobs", ["org_id", "request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_jobs_org_id_request_key", table_name="jobs")
    op.drop_column("jobs", "request_key")
