"""cadences: the scheduler's tick, stop/pause rules, fatigue and the deliverability guard

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03

- `enrollments.last_step_at`: when the contact's previous step ended (sent, done, skipped);
  the next step counts its gap from it, so a late step shifts the rest of the cadence.
  Existing enrollments are brought in line: step 0 in flight, or step 1 due from the
  send of a step 0 that went out.
- `enrollments.step_started_at`: set while the current step is in flight (its draft or card
  not yet ended); a pause that ends never makes such an enrollment due again, so its step
  cannot run twice.
- `enrollments.defer_reason`: why a due step waits (outside business hours, a holiday,
  fatigue, a reply found at the last look), shown by REST and `/job status`.
- `enrollments.time_zone`: the zone the contact's steps are scheduled in, and where it came
  from ("America/Chicago (state)"), for the cards.
- `ix_enrollments_due` (partial, active rows with a due time) serves the tick's claim in due
  order; `ix_enrollments_resume` (partial, paused rows with an end) the resumption of
  out-of-office pauses. Both stay as small as the due work, whatever the table's size.
  `ix_enrollments_losses` (partial: bounced or opted out) finds the jobs whose contacts
  were lost lately, for the deliverability guard.
- `jobs.guard_since`: the deliverability guard counts a resumed job's bounces and opt-outs
  from its resumption, not over the window that paused it.
- `organizations.cadence_settings`: the organization's send window, time zone, holiday
  calendar, fatigue limits and deliverability thresholds (defaults when empty).
- `marketing_campaigns.cadence`: a multi-channel cadence (steps with a day and a channel:
  email, LinkedIn, call, task; calendar or business days); empty: `cadence_days`, all email.
- `email_sends.to_domain` with (org_id, to_domain, sent_at): the per-domain daily fatigue
  limit counts one index range; existing rows are filled from `to_email`. (job_id, sent_at):
  the deliverability guard's sends of a job in its window.
- `periodic_leases`: a named lease row per periodic job, taken by one process at a time
  where PostgreSQL's advisory locks are not available (SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _partial(where: str) -> dict[str, Any]:
    # Any: create_index takes dialect options as **kw.
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    op.add_column(
        "enrollments", sa.Column("last_step_at", storage.types.UTCDateTime(), nullable=True)
    )
    op.add_column("enrollments", sa.Column("defer_reason", sa.String(200), nullable=True))
    op.add_column(
        "enrollments", sa.Column("step_started_at", storage.types.UTCDateTime(), nullable=True)
    )
    op.add_column("enrollments", sa.Column("time_zone", sa.String(100), nullable=True))
    # Enrollments made before the tick existed: planning wrote `next_due_at` = now with
    # step 0's tasks, and nothing recorded the step's end. Their step 0 is in flight (no
    # due time) unless its email went out: then step 1 counts from that send.
    op.execute(
        "UPDATE enrollments SET next_due_at = NULL, step_started_at = created_at "
        "WHERE step = 0 AND status IN ('active', 'paused')"
    )
    done = (
        "(SELECT max(c.executed_at) FROM cards c "
        "WHERE c.enrollment_id = enrollments.id AND c.state = 'done')"
    )
    op.execute(
        f"UPDATE enrollments SET step = 1, step_started_at = NULL, last_step_at = {done}, "
        f"next_due_at = CASE WHEN status = 'active' THEN {done} END "
        "WHERE step = 0 AND status IN ('active', 'paused') AND EXISTS (SELECT 1 FROM cards c "
        "WHERE c.enrollment_id = enrollments.id AND c.state = 'done' "
        "AND c.executed_at IS NOT NULL)"
    )
    op.create_index(
        "ix_enrollments_due",
        "enrollments",
        ["next_due_at"],
        **_partial("status = 'active' AND next_due_at IS NOT NULL"),
    )
    op.create_index(
        "ix_enrollments_resume",
        "enrollments",
        ["paused_until"],
        **_partial("status = 'paused' AND paused_until IS NOT NULL"),
    )
    op.create_index(
        "ix_enrollments_losses",
        "enrollments",
        ["updated_at"],
        **_partial("status = 'stopped' AND stop_reason IN ('bounced', 'opted out')"),
    )
    op.create_index(
        "ix_enrollments_job_id_status_due", "enrollments", ["job_id", "status", "next_due_at"]
    )
    op.add_column("jobs", sa.Column("guard_since", storage.types.UTCDateTime(), nullable=True))
    op.add_column(
        "organizations",
        sa.Column(
            "cadence_settings",
            storage.types.JsonType,
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
    )
    op.add_column(
        "marketing_campaigns",
        sa.Column(
            "cadence", storage.types.JsonType, nullable=False, server_default=sa.text("'{}'")
        ),
    )
    op.add_column("email_sends", sa.Column("to_domain", sa.String(255), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE email_sends SET to_domain = lower(split_part(to_email, '@', 2))")
    else:
        op.execute(
            "UPDATE email_sends SET to_domain = lower(substr(to_email, instr(to_email, '@') + 1))"
        )
    op.create_index(
        "ix_email_sends_org_id_to_domain_sent_at",
        "email_sends",
        ["org_id", "to_domain", "sent_at"],
    )
    op.create_index("ix_email_sends_job_id_sent_at", "email_sends", ["job_id", "sent_at"])
    op.create_table(
        "periodic_leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(100), nullable=True),
        sa.Column("lease_until", storage.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_periodic_leases")),
    )


def downgrade() -> None:
    op.drop_table("periodic_leases")
    op.drop_index("ix_email_sends_job_id_sent_at", table_name="email_sends")
    op.drop_index("ix_email_sends_org_id_to_domain_sent_at", table_name="email_sends")
    op.drop_column("email_sends", "to_domain")
    op.drop_column("marketing_campaigns", "cadence")
    op.drop_column("organizations", "cadence_settings")
    op.drop_column("jobs", "guard_since")
    op.drop_index("ix_enrollments_job_id_status_due", table_name="enrollments")
    op.drop_index("ix_enrollments_losses", table_name="enrollments")
    op.drop_index("ix_enrollments_resume", table_name="enrollments")
    op.drop_index("ix_enrollments_due", table_name="enrollments")
    op.drop_column("enrollments", "time_zone")
    op.drop_column("enrollments", "step_started_at")
    op.drop_column("enrollments", "defer_reason")
    op.drop_column("enrollments", "last_step_at")
