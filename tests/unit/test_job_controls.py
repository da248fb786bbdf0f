"""Controls of a job's cadence on a fake unit of work and as pure functions: changing a
job (PATCH), its own deliverability guard, counting its enrollments by reason (the kinds
of wait the engine writes), and the notice of a job the guard paused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.cadence import (
    CadenceSettings,
    Channel,
    ContactFacts,
    DueEnrollment,
    GuardCounts,
    GuardThresholds,
    JobFacts,
    NoHolidays,
    Outcome,
    StepSpec,
    decide,
    guard_verdict,
)
from domain.enrollments import EnrollmentGroup, EnrollmentSummary, defer_kind
from domain.errors import InvalidInput, InvalidTransition, NotPermitted
from domain.jobs import (
    Behaviour,
    CreateJobRequest,
    EnrollmentStatus,
    JobGuard,
    JobStatus,
    UpdateJobRequest,
)
from handlers.slack.proposals import guard_paused_message
from tests.unit.fakes import (
    ADMIN,
    ORG,
    OTHER_REP,
    REP,
    Outreaching,
    actor,
    make_contact,
    outreaching,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # Wed 09:00 in Texas, 07:00 in California


@pytest.fixture
def h() -> Outreaching:
    h = outreaching()
    for contact_id in (1, 2):
        h.world.contacts[(ORG, contact_id)] = make_contact(contact_id)
    return h


def make_job(h: Outreaching, *, owner: int = REP) -> int:
    job = h.outreach.jobs.create_job(
        ORG,
        CreateJobRequest.model_validate(
            {
                "name": "Win-back",
                "description": "Quiet lenders",
                "params": {
                    "target": {"contact_ids": [1, 2]},
                    "templates": [{"subject": "Hi", "body": "Turn times are down."}] * 2,
                    "cadence": {"days": [0, 4]},
                    "behaviour": {"batch_size": 20, "auto_approve": False},
                },
            }
        ),
        owner_id=owner,
    )
    h.outreach.jobs.plan_job(ORG, job.id)
    return job.id


# --- Jobs.update_job, Jobs.set_job_guard -----------------------------------------------------


def test_a_job_change_keeps_what_it_leaves_out_even_inside_behaviour(h: Outreaching) -> None:
    job_id = make_job(h)
    request = UpdateJobRequest.model_validate({"behaviour": {"auto_approve": True}})

    job = h.outreach.jobs.update_job(ORG, job_id, request, by=actor(REP))

    assert (job.name, job.description) == ("Win-back", "Quiet lenders")
    assert job.params["behaviour"] == Behaviour(batch_size=20, auto_approve=True).model_dump()
    assert job.params["target"] == {
        "contact_ids": [1, 2],
        "client_ids": [],
        "emails": [],
        "filters": None,
        "stale_top": None,
    }


def test_a_job_change_by_another_rep_is_refused_and_changes_nothing(h: Outreaching) -> None:
    job_id = make_job(h)

    with pytest.raises(NotPermitted, match="Only Maria Lopez, who launched job"):
        h.outreach.jobs.update_job(ORG, job_id, UpdateJobRequest(name="Mine"), by=actor(OTHER_REP))
    changed = h.outreach.jobs.update_job(
        ORG, job_id, UpdateJobRequest(name="Ours"), by=actor(ADMIN, role="admin")
    )

    assert changed.name == "Ours"


def test_a_finished_job_cannot_be_changed_nor_guarded(h: Outreaching) -> None:
    job_id = make_job(h)
    h.outreach.jobs.set_job_status(ORG, job_id, JobStatus.CANCELLED)

    with pytest.raises(InvalidTransition, match="is cancelled: a finished job cannot be changed"):
        h.outreach.jobs.update_job(ORG, job_id, UpdateJobRequest(name="x"))
    with pytest.raises(InvalidTransition):
        h.outreach.jobs.set_job_guard(ORG, job_id, JobGuard(max_opt_out_rate=0.01))
    assert h.job(job_id).name == "Win-back"


def test_a_null_name_is_refused_naming_the_field(h: Outreaching) -> None:
    job_id = make_job(h)

    with pytest.raises(InvalidInput) as refused:
        h.outreach.jobs.update_job(ORG, job_id, UpdateJobRequest.model_validate({"name": None}))

    assert refused.value.field == "name"


def test_a_jobs_guard_replaces_the_one_before_and_leaves_the_rest_of_its_params(
    h: Outreaching,
) -> None:
    job_id = make_job(h)
    jobs = h.outreach.jobs

    jobs.set_job_guard(ORG, job_id, JobGuard(max_opt_out_rate=0.01, min_sends=50), by=actor(REP))
    guard = jobs.set_job_guard(ORG, job_id, JobGuard(max_opt_out_rate=0.03))

    assert guard == JobGuard(max_opt_out_rate=0.03)
    params = h.job(job_id).parsed_params()
    assert params.guard == JobGuard(max_opt_out_rate=0.03)
    assert params.behaviour.batch_size == 20


# --- the enrollment summary -----------------------------------------------------------------


def test_a_jobs_summary_counts_its_enrollments_by_status_and_reason(h: Outreaching) -> None:
    job_id = make_job(h)
    first, second = sorted(e for e, row in h.world.enrollments.items() if row.job_id == job_id)
    h.world.enrollments[second].status = "stopped"
    h.world.enrollments[second].stop_reason = "replied"

    detail = h.outreach.jobs.job_detail(ORG, job_id)
    rows = h.outreach.jobs.list_enrollments(ORG, job_id)

    assert detail.enrollments == EnrollmentSummary(
        total=2,
        by_status={EnrollmentStatus.ACTIVE: 1, EnrollmentStatus.STOPPED: 1},
        running=1,
        stopped_by_reason={"replied": 1},
    )
    assert [(r.id, r.name, r.step, r.total_steps) for r in rows] == [
        (first, "Dana1 Whitfield", 1, 2),
        (second, "Dana2 Whitfield", 1, 2),
    ]


def test_summary_groups_add_up_with_the_earliest_due_time_and_the_biggest_reasons_first() -> None:
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=2)
    active = EnrollmentStatus.ACTIVE
    groups = [
        EnrollmentGroup(status=active, running=True, count=4),
        EnrollmentGroup(status=active, defer="fatigue", count=1, next_due_at=later),
        EnrollmentGroup(status=active, defer="outside business hours", count=3, next_due_at=soon),
        EnrollmentGroup(status=EnrollmentStatus.STOPPED, reason="opted out", count=1),
        EnrollmentGroup(status=EnrollmentStatus.STOPPED, reason="replied", count=5),
        EnrollmentGroup(status=EnrollmentStatus.PAUSED, reason="out of office", count=2),
        EnrollmentGroup(status=EnrollmentStatus.COMPLETED, count=7),
    ]

    summary = EnrollmentSummary.of(groups)

    assert summary.model_dump() == {
        "total": 23,
        "by_status": {"active": 8, "paused": 2, "completed": 7, "stopped": 6},
        "running": 4,
        "next_due_at": soon,
        "paused_by_reason": {"out of office": 2},
        "stopped_by_reason": {"replied": 5, "opted out": 1},
        "deferred_by_reason": {"outside business hours": 3, "fatigue": 1},
    }
    assert list(summary.stopped_by_reason) == ["replied", "opted out"]


def _reason(contact: ContactFacts, *, step: int = 0, enrolled: datetime | None = None) -> str:
    """The defer reason the cadence engine writes for a contact's due enrollment."""
    due = DueEnrollment(
        id=1,
        org_id=ORG,
        job_id=1,
        contact_id=contact.contact_id,
        step=step,
        enrolled_at=enrolled or NOW - timedelta(days=2),
        last_step_at=NOW - timedelta(days=1) if step else None,
    )
    job = JobFacts(
        job_id=1,
        status="running",
        started_at=NOW - timedelta(days=2),
        steps=(StepSpec(0, 0, Channel.EMAIL), StepSpec(1, 4, Channel.EMAIL)),
    )
    decision = decide(due, contact, job, CadenceSettings(), NoHolidays(), now=NOW)
    assert decision.outcome == Outcome.DEFER
    assert decision.reason is not None
    return decision.reason


@pytest.mark.parametrize(
    ("contact", "step", "kind"),
    [
        (ContactFacts(1, "dana@x.test", state="TX", emails_last_week=3), 0, "fatigue"),
        (ContactFacts(1, "dana@x.test", domain_emails_last_day=25), 0, "fatigue"),
        (
            ContactFacts(1, "dana@x.test", time_zone="America/Los_Angeles"),
            0,
            "outside business hours",
        ),
        (ContactFacts(1, "dana@x.test", state="TX"), 1, "waiting for the step's day"),
        (
            ContactFacts(
                1, "dana@x.test", paused_until=NOW + timedelta(days=3), pause_reason="out of office"
            ),
            0,
            "paused by the contact until a date",
        ),
    ],
)
def test_each_defer_reason_the_engine_writes_is_counted_under_its_kind(
    contact: ContactFacts, step: int, kind: str
) -> None:
    assert defer_kind(_reason(contact, step=step)) == kind


def test_a_defer_reason_of_another_shape_is_counted_as_other() -> None:
    assert defer_kind("resumed after the pause ended") == "resumed after a pause"
    assert defer_kind("the mailbox's daily cap is reached") == "other"


# --- the guard's notice ---------------------------------------------------------------------------


def _verdict(counts: GuardCounts) -> str:
    reason = guard_verdict(counts, GuardThresholds(0.05, 0.02, 20))
    assert reason is not None
    return reason


def test_the_notice_of_a_bounce_spike_says_what_spiked_and_what_to_do() -> None:
    reason = _verdict(GuardCounts(sends=40, bounces=3, opt_outs=0))

    assert guard_paused_message(12, "Q4 lender win-back", reason) == (
        "⏸️ Job #12 (Q4 lender win-back) paused itself: 3 hard bounces in 40 sends (7.5%, "
        "limit 5.0%). Clean the list, then `/job resume 12`."
    )


def test_the_notice_of_an_opt_out_spike_says_to_check_the_audience() -> None:
    reason = _verdict(GuardCounts(sends=50, bounces=0, opt_outs=2))

    assert guard_paused_message(7, "Title companies", reason) == (
        "⏸️ Job #7 (Title companies) paused itself: 2 opt-outs in 50 sends (4.0%, limit 2.0%). "
        "Check the audience and the message, then `/job resume 7`."
    )


def test_the_notice_shows_a_reason_it_does_not_know_whole_and_disarms_a_name() -> None:
    message = guard_paused_message(3, "<!channel> win-back & co", "paused for maintenance.")

    assert message == (
        "⏸️ Job #3 (&lt;!channel&gt; win-back &amp; co) paused itself: paused for maintenance. "
        "`/job resume 3` carries it on once that is fixed."
    )
