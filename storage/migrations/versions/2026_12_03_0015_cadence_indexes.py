"""cadence indexes: a job's last task batch and the emails on their way are index probes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03

- `ix_job_tasks_org_id_job_id_batch` (org_id, job_id, batch): `TaskRepo.next_batch` (the
  cadence tick asks it for every job of every chunk, planning for every batch) reads the
  job's largest batch number from the end of the index instead of every task the job ever
  had. Measured by bench/cadence_tick.py: on 1,000,000 enrollments (2.5M tasks) the 240
  calls of a 10,000-due tick took 9.1 s, 38 ms each, and grew with the table.
- `ix_email_sends_on_their_way` (org_id, to_domain), partial: queued or sending rows only.
  The fatigue limits count the emails on their way to a chunk's domains (and addresses)
  from it: an index as small as the outbox's queue, instead of every send ever made to
  those domains (40 ms a chunk on 1M enrollments, growing with the history).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ON_THEIR_WAY = "status IN ('queued', 'sending')"


def upgrade() -> None:
    op.create_index("ix_job_tasks_org_id_job_id_batch", "job_tasks", ["org_id", "job_id", "batch"])
    op.create_index(
        "ix_email_sends_on_their_way",
        "email_sends",
        ["org_id", "to_domain"],
        postgresql_where=sa.text(ON_THEIR_WAY),
        sqlite_where=sa.text(ON_THEIR_WAY),
    )


def downgrade() -> None:
    op.drop_index("ix_email_sends_on_their_way", table_name="email_sends")
    op.drop_index("ix_job_tasks_org_id_job_id_batch", table_name="job_tasks")
