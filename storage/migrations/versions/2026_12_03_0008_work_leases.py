"""work leases: tasks are claimed with a lease, job planning has one, and a sweep finds the rest

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

A process may die between any two statements. `job_tasks.claimed_at`/`lease_until` let a
`running` task whose worker died be claimed again once its lease is over; `jobs.planned_at`
says planning finished and `jobs.plan_lease_until` who plans now, so a job left `pending`
or half planned is planned again by the recovery sweep. The partial indexes cover only
the rows a sweep looks for, so its cost follows the work in flight, not the table sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_FLIGHT_CARDS = "state IN ('approved', 'executing')"
_UNPLANNED_JOBS = "planned_at IS NULL AND status IN ('pending', 'running')"


# Plain ALTER TABLE on both databases, as in 0007 (batch mode would rebuild the tables on
# SQLite, and dropping the old `jobs` cascades to its tasks and enrollments).


def upgrade() -> None:
    op.add_column("job_tasks", sa.Column("claimed_at", storage.types.UTCDateTime(timezone=True)))
    op.add_column("job_tasks", sa.Column("lease_until", storage.types.UTCDateTime(timezone=True)))
    op.add_column("jobs", sa.Column("planned_at", storage.types.UTCDateTime(timezone=True)))
    op.add_column("jobs", sa.Column("plan_lease_until", storage.types.UTCDateTime(timezone=True)))
    # Jobs that started before this revision were planned by then (or will never be).
    op.execute(
        "UPDATE jobs SET planned_at = COALESCE(started_at, created_at) WHERE status <> 'pending'"
    )
    # Tasks left running before this revision have no lease: give them an expired one.
    op.execute(
        "UPDATE job_tasks SET claimed_at = started_at, lease_until = started_at"
        " WHERE status = 'running'"
    )
    op.create_index(
        "ix_job_tasks_running_lease",
        "job_tasks",
        ["lease_until"],
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_jobs_unplanned",
        "jobs",
        ["id"],
        postgresql_where=sa.text(_UNPLANNED_JOBS),
        sqlite_where=sa.text(_UNPLANNED_JOBS),
    )
    op.create_index(
        "ix_cards_in_flight_updated_at",
        "cards",
        ["updated_at"],
        postgresql_where=sa.text(_IN_FLIGHT_CARDS),
        sqlite_where=sa.text(_IN_FLIGHT_CARDS),
    )


def downgrade() -> None:
    op.drop_index("ix_cards_in_flight_updated_at", table_name="cards")
    op.drop_index("ix_jobs_unplanned", table_name="jobs")
    op.drop_index("ix_job_tasks_running_lease", table_name="job_tasks")
    op.drop_column("jobs", "plan_lease_until")
    op.drop_column("jobs", "planned_at")
    op.drop_column("job_tasks", "lease_until")
    op.drop_column("job_tasks", "claimed_at")
