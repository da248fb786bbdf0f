"""What a job's enrollments look like from outside: one contact's place in the cadence, and
a job's enrollments counted by status and by reason (REST and `/job status`).

The cadence engine writes why a step waits as a sentence with times and counts in it
("fatigue: 3 emails to dana@… in 7 days (limit 3); retry Mon …"). Counting those sentences
as they are would make one group per contact; `DEFER_KINDS` names the shapes the engine
writes, so a summary counts "fatigue 4, outside business hours 10" instead.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Final

from pydantic import BaseModel, Field

from domain.jobs import EnrollmentStatus

#: The shapes of the defer reasons the cadence engine writes (`%`: any text, as in SQL
#: LIKE), each with the label a summary counts it under; the first that matches wins.
DEFER_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("fatigue:%", "fatigue"),
    ("outside business hours%", "outside business hours"),
    ("step % is due %", "waiting for the step's day"),
    ("resumed after the pause ended%", "resumed after a pause"),
    ("%: until %", "paused by the contact until a date"),
)
#: A defer reason of a shape `DEFER_KINDS` does not name.
OTHER_DEFER_KIND: Final = "other"


def defer_kind(reason: str) -> str:
    """Return the label a summary counts a defer reason under."""
    for pattern, label in DEFER_KINDS:
        if fnmatch.fnmatchcase(reason, pattern.replace("%", "*")):
            return label
    return OTHER_DEFER_KIND


class EnrollmentRow(BaseModel):
    """An enrollment as storage keeps it, with its contact (`step`: steps done, from 0)."""

    id: int
    contact_id: int
    email: str
    first_name: str | None
    last_name: str | None
    status: EnrollmentStatus
    step: int
    next_due_at: datetime | None
    last_step_at: datetime | None
    stop_reason: str | None
    defer_reason: str | None
    time_zone: str | None
    enrolled_at: datetime


class EnrollmentView(BaseModel):
    """One contact's place in a job's cadence."""

    id: int
    contact_id: int
    email: str
    name: str = Field(description="The contact's name, or their address when they have none.")
    status: EnrollmentStatus = Field(
        description="`active` (a step runs or is scheduled), `paused` (the job's pause or the "
        "contact's out-of-office), `completed` (every step ran), `stopped` (see stop_reason)."
    )
    step: int = Field(
        description="The step the contact is on, counted from 1 (the last one once completed)."
    )
    total_steps: int | None = Field(description="The cadence's steps (null: a job without one).")
    steps_done: int = Field(description="Steps that ended (sent, done or skipped).")
    next_due_at: datetime | None = Field(
        description="When the cadence looks at the contact again; null while a step's card "
        "waits for review, and once the cadence ended."
    )
    last_step_at: datetime | None = Field(description="When the previous step ended.")
    stop_reason: str | None = Field(
        description="Why the cadence stopped or paused (replied, opted out, bounced, …)."
    )
    defer_reason: str | None = Field(description="Why the next step waits, if it does.")
    time_zone: str | None = Field(
        description="The zone the steps are scheduled in, and where it came from."
    )
    enrolled_at: datetime

    @classmethod
    def of(cls, row: EnrollmentRow, *, total_steps: int | None) -> EnrollmentView:
        """Show a stored enrollment, its step counted as people count."""
        name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
        step = row.step + 1
        if total_steps:
            step = min(step, total_steps)
        return cls(
            id=row.id,
            contact_id=row.contact_id,
            email=row.email,
            name=name,
            status=row.status,
            step=step,
            total_steps=total_steps,
            steps_done=row.step,
            next_due_at=row.next_due_at,
            last_step_at=row.last_step_at,
            stop_reason=row.stop_reason,
            defer_reason=row.defer_reason,
            time_zone=row.time_zone,
            enrolled_at=row.enrolled_at,
        )


class EnrollmentGroup(BaseModel):
    """One group of a job's enrollments: alike status, reason and kind of wait."""

    status: EnrollmentStatus
    #: The stop (or pause) reason, as stored.
    reason: str | None = None
    #: The defer reason's kind (see DEFER_KINDS), for active enrollments that wait.
    defer: str | None = None
    #: True for active enrollments whose step runs now (its card waits for review).
    running: bool = False
    count: int
    next_due_at: datetime | None = None


class EnrollmentSummary(BaseModel):
    """A job's enrollments counted by status and by reason."""

    total: int = 0
    by_status: dict[EnrollmentStatus, int] = Field(
        default_factory=dict, description="Enrollments per status."
    )
    running: int = Field(
        default=0, description="Active enrollments whose step's card waits for review."
    )
    next_due_at: datetime | None = Field(
        default=None, description="The earliest time an active enrollment is looked at again."
    )
    paused_by_reason: dict[str, int] = Field(default_factory=dict)
    stopped_by_reason: dict[str, int] = Field(default_factory=dict)
    deferred_by_reason: dict[str, int] = Field(
        default_factory=dict,
        description="Active enrollments that wait, by kind: fatigue, outside business hours, "
        "waiting for the step's day, ….",
    )

    @classmethod
    def of(cls, groups: list[EnrollmentGroup]) -> EnrollmentSummary:
        """Add up the groups storage counted (most frequent reasons first)."""
        summary = cls()
        for group in groups:
            summary.total += group.count
            summary.by_status[group.status] = summary.by_status.get(group.status, 0) + group.count
            if group.status == EnrollmentStatus.ACTIVE:
                if group.running:
                    summary.running += group.count
                elif group.next_due_at is not None and (
                    summary.next_due_at is None or group.next_due_at < summary.next_due_at
                ):
                    summary.next_due_at = group.next_due_at
                if group.defer and not group.running:
                    _add(summary.deferred_by_reason, group.defer, group.count)
            elif group.status == EnrollmentStatus.PAUSED:
                _add(summary.paused_by_reason, group.reason or "paused", group.count)
            elif group.status == EnrollmentStatus.STOPPED:
                _add(summary.stopped_by_reason, group.reason or "stopped", group.count)
        summary.by_status = {
            s: summary.by_status[s] for s in EnrollmentStatus if s in summary.by_status
        }
        for counts in (
            summary.paused_by_reason,
            summary.stopped_by_reason,
            summary.deferred_by_reason,
        ):
            ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            counts.clear()
            counts.update(ordered)
        return summary


def _add(counts: dict[str, int], key: str, count: int) -> None:
    counts[key] = counts.get(key, 0) + count
