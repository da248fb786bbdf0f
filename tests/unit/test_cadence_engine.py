"""The cadence engine (domain/cadence.decide): a campaign walked through day 0 → 4 → 10 →
21 across a weekend, Thanksgiving and time zones, and every stop, pause and deferral rule.
Pure: no database, the clock is an argument.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from domain.cadence import (
    BOUNCED,
    COMPLAINED,
    JOB_PAUSED,
    NEW_ORDER,
    OPTED_OUT,
    REPLIED,
    CadenceSettings,
    Channel,
    ContactFacts,
    DueEnrollment,
    GuardCounts,
    GuardThresholds,
    JobFacts,
    Outcome,
    StepSpec,
    decide,
    guard_verdict,
)
from domain.errors import InvalidInput
from integrations.holiday_calendar import public_holidays

US = public_holidays("US")
SETTINGS = CadenceSettings()
# Wednesday 2026-11-25, 15:00 UTC = 09:00 in Chicago; Thanksgiving is Thursday the 26th.
ENROLLED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
STEPS = tuple(StepSpec(i, d, Channel.EMAIL) for i, d in enumerate((0, 4, 10, 21)))
JOB = JobFacts(job_id=1, status="running", started_at=ENROLLED, steps=STEPS)


def contact(**changes: object) -> ContactFacts:
    base = ContactFacts(contact_id=7, email="dana@pinnacle.example", state="TX")
    return replace(base, **changes)  # type: ignore[arg-type]


def due(step: int, last_step_at: datetime | None) -> DueEnrollment:
    return DueEnrollment(
        id=3,
        org_id=1,
        job_id=1,
        contact_id=7,
        step=step,
        enrolled_at=ENROLLED,
        last_step_at=last_step_at,
    )


def walk(person: ContactFacts, job: JobFacts = JOB) -> list[datetime]:
    """Run every step as soon as the engine lets it; return when each ran (UTC)."""
    ran: list[datetime] = []
    now = ENROLLED
    last: datetime | None = None
    for step in range(len(job.steps)):
        for _ in range(50):
            decision = decide(due(step, last), person, job, SETTINGS, US, now=now)
            if decision.outcome == Outcome.RUN:
                break
            assert decision.outcome == Outcome.DEFER, decision
            assert decision.at is not None
            assert decision.at > now
            now = decision.at
        else:
            pytest.fail("the step never ran")
        ran.append(now)
        last = now
    assert decide(due(len(job.steps), last), person, job, SETTINGS, US, now=now).outcome == (
        Outcome.COMPLETE
    )
    return ran


def test_a_texan_is_walked_through_day_0_4_10_21_skipping_weekends_and_thanksgiving() -> None:
    ran = walk(contact())
    local = [r.astimezone(public_zone("America/Chicago")) for r in ran]
    assert [f"{d:%a %m-%d %H:%M}" for d in local] == [
        "Wed 11-25 09:00",
        # Day 4 is Sunday the 29th: Monday at the window's opening.
        "Mon 11-30 09:00",
        # Day 10 is 6 days after day 4, counted from Monday (the late step shifts the rest):
        # Sunday 12-06, so Monday 12-07; day 21 is 11 days later, Friday 12-18.
        "Mon 12-07 09:00",
        "Fri 12-18 09:00",
    ]


def public_zone(name: str) -> object:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_business_days_skip_weekends_and_the_holiday_in_the_count() -> None:
    job = replace(JOB, business_days=True)
    ran = walk(contact(), job)
    local = [r.astimezone(public_zone("America/Chicago")).date() for r in ran]
    # 4 business days after Wed 11-25, without Thu 11-26 (Thanksgiving) and the weekend:
    # Fri 27, Mon 30, Tue 1, Wed 2.
    assert local[:2] == [date(2026, 11, 25), date(2026, 12, 2)]


def test_a_step_waits_for_the_window_in_the_contacts_own_zone() -> None:
    # 15:00 UTC is 07:00 in Los Angeles: step 0 waits for 09:00 there (17:00 UTC).
    decision = decide(due(0, None), contact(state="CA"), JOB, SETTINGS, US, now=ENROLLED)
    assert decision.outcome == Outcome.DEFER
    assert decision.at == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    assert decision.zone is not None
    assert decision.zone.source == "state"
    assert (decision.reason or "").endswith("09:00 PST")


def test_the_local_day_not_the_utc_day_decides_across_the_date_line() -> None:
    # Sunday 2026-11-29 17:00 in Honolulu is Monday 03:00 UTC: still the weekend there.
    now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    person = contact(time_zone="Pacific/Honolulu")
    decision = decide(due(1, ENROLLED), person, JOB, SETTINGS, US, now=now)
    assert decision.outcome == Outcome.DEFER
    assert decision.at == datetime(2026, 11, 30, 19, 0, tzinfo=UTC)  # Mon 09:00 HST
    assert decision.zone is not None
    assert decision.zone.source == "contact"


def test_a_contact_without_zone_or_state_uses_the_orgs_zone_and_says_so() -> None:
    settings = CadenceSettings(timezone="America/New_York")
    person = contact(state=None)
    decision = decide(due(0, None), person, JOB, settings, US, now=ENROLLED)
    assert decision.outcome == Outcome.RUN  # 10:00 in New York
    assert decision.zone is not None
    assert decision.zone.describe().startswith("America/New_York: the organization's")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"opted_out": True}, OPTED_OUT),
        ({"email_status": "bounced"}, BOUNCED),
        ({"email_status": "complained"}, COMPLAINED),
        ({"last_replied_at": ENROLLED + timedelta(days=1)}, REPLIED),
    ],
)
def test_the_stop_rules_end_the_cadence_with_their_reason(
    changes: dict[str, object], reason: str
) -> None:
    now = ENROLLED + timedelta(days=5)
    decision = decide(due(1, ENROLLED), contact(**changes), JOB, SETTINGS, US, now=now)
    assert (decision.outcome, decision.reason) == (Outcome.STOP, reason)


def test_a_reply_from_before_the_enrollment_does_not_stop_it() -> None:
    person = contact(last_replied_at=ENROLLED - timedelta(days=90))
    decision = decide(due(0, None), person, JOB, SETTINGS, US, now=ENROLLED)
    assert decision.outcome == Outcome.RUN


def test_a_new_order_from_the_contacts_client_is_a_win() -> None:
    person = contact(client_last_order_at=ENROLLED + timedelta(days=2))
    now = ENROLLED + timedelta(days=6)
    decision = decide(due(1, ENROLLED), person, JOB, SETTINGS, US, now=now)
    assert (decision.outcome, decision.reason, decision.win) == (Outcome.STOP, NEW_ORDER, True)


def test_a_paused_job_pauses_and_an_ended_campaign_stops() -> None:
    now = ENROLLED + timedelta(days=5)
    paused = decide(
        due(1, ENROLLED), contact(), replace(JOB, status="paused"), SETTINGS, US, now=now
    )
    assert (paused.outcome, paused.reason) == (Outcome.PAUSE, JOB_PAUSED)
    ended = replace(JOB, campaign_end=date(2026, 11, 27))
    assert decide(due(1, ENROLLED), contact(), ended, SETTINGS, US, now=now).outcome == (
        Outcome.STOP
    )
    archived = replace(JOB, campaign_status="archived")
    stopped = decide(due(1, ENROLLED), contact(), archived, SETTINGS, US, now=now)
    assert stopped.outcome == Outcome.STOP
    assert "archived" in (stopped.reason or "")
    cancelled = decide(
        due(1, ENROLLED), contact(), replace(JOB, status="cancelled"), SETTINGS, US, now=now
    )
    assert (cancelled.outcome, cancelled.reason) == (Outcome.STOP, "job cancelled")


def test_a_person_paused_until_january_waits_until_then() -> None:
    person = contact(paused_until=datetime(2027, 1, 4, 6, 0, tzinfo=UTC), pause_reason="not now")
    now = ENROLLED + timedelta(days=5)
    decision = decide(due(1, ENROLLED), person, JOB, SETTINGS, US, now=now)
    assert decision.outcome == Outcome.DEFER
    assert decision.at == datetime(2027, 1, 4, 15, 0, tzinfo=UTC)  # Mon 09:00 in Texas
    assert (decision.reason or "").startswith("not now: until Mon 2027-01-04 09:00")


def test_fatigue_defers_an_email_to_the_next_days_window_and_says_why() -> None:
    now = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # Monday 10:00 in Texas
    tired = contact(emails_last_week=3)
    decision = decide(due(1, ENROLLED), tired, JOB, SETTINGS, US, now=now)
    assert decision.outcome == Outcome.DEFER
    assert decision.at == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert "fatigue: 3 emails to dana@pinnacle.example in 7 days (limit 3)" in (
        decision.reason or ""
    )
    crowded = contact(domain_emails_last_day=25)
    decision = decide(due(1, ENROLLED), crowded, JOB, SETTINGS, US, now=now)
    assert decision.outcome == Outcome.DEFER
    assert "pinnacle.example today" in (decision.reason or "")


def test_fatigue_does_not_hold_back_a_call() -> None:
    steps = (StepSpec(0, 0, Channel.EMAIL), StepSpec(1, 4, Channel.CALL))
    job = replace(JOB, steps=steps)
    now = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    decision = decide(due(1, ENROLLED), contact(emails_last_week=9), job, SETTINGS, US, now=now)
    assert decision.outcome == Outcome.RUN
    assert decision.step is not None
    assert decision.step.channel == Channel.CALL


def test_the_guard_judges_rates_only_past_its_minimum_sample() -> None:
    limits = GuardThresholds(max_bounce_rate=0.05, max_opt_out_rate=0.02, min_sends=20)
    assert guard_verdict(GuardCounts(sends=10, bounces=5, opt_outs=0), limits) is None
    assert guard_verdict(GuardCounts(sends=100, bounces=5, opt_outs=2), limits) is None
    bounces = guard_verdict(GuardCounts(sends=40, bounces=3, opt_outs=0), limits)
    assert bounces is not None
    assert "3 hard bounces in 40 sends (7.5%, limit 5.0%)" in bounces
    opt_outs = guard_verdict(GuardCounts(sends=100, bounces=0, opt_outs=3), limits)
    assert opt_outs is not None
    assert "3 opt-outs in 100 sends" in opt_outs


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"window_start": "18:00", "window_end": "09:00"}, "window_end"),
        ({"weekdays": [7]}, "weekdays"),
        ({"max_bounce_rate": 0}, "max_bounce_rate"),
    ],
)
def test_bad_settings_are_refused_with_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises((InvalidInput, ValueError)) as caught:
        CadenceSettings.model_validate(fields)
    assert field in str(caught.value) or getattr(caught.value, "field", None) == field


def test_a_step_due_on_thanksgiving_goes_out_the_day_after() -> None:
    monday = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    steps = (StepSpec(0, 0, Channel.EMAIL), StepSpec(1, 3, Channel.EMAIL))
    job = replace(JOB, steps=steps, started_at=monday)
    thursday = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    early = replace(due(1, monday), enrolled_at=monday)
    decision = decide(early, contact(), job, SETTINGS, US, now=thursday)
    assert decision.outcome == Outcome.DEFER
    assert decision.at == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # Fri 09:00 CST
    # Without a holiday calendar it would have run on the day.
    from domain.cadence import NoHolidays

    assert decide(early, contact(), job, SETTINGS, NoHolidays(), now=thursday).outcome == (
        Outcome.RUN
    )
