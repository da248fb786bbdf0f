"""Controlling a job's cadence from Slack, through signed requests: `/job pause|resume`,
`/job status` with where the contacts are, `/campaign launch … --dry-run`, and the notice
a job paused by the deliverability guard posts. Slack is the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from domain.cadence import CadenceSettings
from domain.clock import FixedClock
from domain.jobs import CreateJobRequest
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.slack import ServedSlack
from tests.support.slack_app import (
    OTHER_REP,
    REP,
    REVIEW_CHANNEL,
    SlackWorld,
    slack_world,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock) as built:
        yield built


def answer_to(world: SlackWorld, text: str, *, command: str = "/job", user: str = REP) -> str:
    """Send a slash command and return its answer (the newest response)."""
    before = len(world.responses())
    assert world.command(text, command=command, user=user).status_code == 200
    return str(wait_until(lambda: world.responses()[before:], what=f"answer to {text}")[0])


def launch(world: SlackWorld) -> int:
    """Launch the campaign from Slack and wait for its planning; return the job id."""
    assert world.command("launch Q4 lender win-back").status_code == 200
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch answer")
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, len(world.contact_ids))
    return job_id


def job_status(world: SlackWorld, job_id: int) -> str:
    with world.session_factory() as s:
        return str(s.scalar(select(m.Job.status).where(m.Job.id == job_id)))


def set_enrollment(world: SlackWorld, job_id: int, contact_id: int, **values: Any) -> None:
    with world.session_factory() as s:
        s.execute(
            update(m.Enrollment)
            .where(m.Enrollment.job_id == job_id, m.Enrollment.contact_id == contact_id)
            .values(**values)
        )
        s.commit()


# --- /job pause, /job resume ----------------------------------------------------------------


def test_the_owner_pauses_and_resumes_a_job_and_a_second_pause_says_it_is_paused(
    world: SlackWorld,
) -> None:
    job_id = launch(world)
    line = f"*#{job_id}* Q4 lender win-back · launch"

    paused = answer_to(world, f"pause {job_id}")
    again = answer_to(world, f"pause #{job_id}")
    resumed = answer_to(world, f"resume {job_id}")

    assert paused == (
        f"⏸️ Paused {line} — `paused` · 0 cards, 0 approved, 0 sent\n"
        f"Its contacts wait where they are; `/job resume {job_id}` carries the cadence on."
    )
    assert again == f"⚠️ Job #{job_id} is already paused; `/job resume {job_id}` carries it on."
    assert resumed == (
        f"▶️ Resumed {line} — `running` · 0 cards, 0 approved, 0 sent\n"
        "Its paused contacts are due again; each step goes out inside the send window of the "
        "contact's time zone."
    )
    assert job_status(world, job_id) == "running"
    assert answer_to(world, f"resume {job_id}") == f"⚠️ Job #{job_id} is already running."


def test_another_rep_cannot_pause_the_job_and_a_finished_job_cannot_be_resumed(
    world: SlackWorld,
) -> None:
    job_id = launch(world)

    refused = answer_to(world, f"pause {job_id}", user=OTHER_REP)
    assert refused == f"⚠️ Only Maria Lopez, who launched job #{job_id}, or an admin can pause it."
    assert job_status(world, job_id) == "running"

    assert answer_to(world, f"cancel {job_id}").startswith("Cancelled")
    finished = answer_to(world, f"resume {job_id}")
    assert finished == (
        f"⚠️ Job #{job_id} has finished (`cancelled`): a finished job cannot be resumed. "
        "`/campaign launch` starts a new one."
    )


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("pause", "⚠️ `/job pause` needs a job number, e.g. `/job pause 12`"),
        ("resume twelve", "⚠️ `/job resume` needs a job number, e.g. `/job resume 12`"),
        ("pause 99999999999999999999", "⚠️ `/job pause` needs a job number, e.g. `/job pause 12`"),
        ("pause 424242", "⚠️ job 424242 not found"),
        ("status ١٢", "⚠️ `/job status` needs a job number, e.g. `/job status 12`"),
    ],
)
def test_a_job_command_without_a_job_it_can_find_says_so(
    world: SlackWorld, text: str, answer: str
) -> None:
    assert answer_to(world, text) == answer


# --- /job status --------------------------------------------------------------------------------


def test_job_status_says_where_the_contacts_are_in_the_cadence(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> None:
    with slack_world(committed_engine, served_slack, clock, contacts=6) as world:
        job_id = launch(world)
        first, second, third, fourth, fifth, sixth = world.contact_ids
        due = clock.now() + timedelta(days=4)
        set_enrollment(
            world,
            job_id,
            second,
            step=1,
            next_due_at=due,
            defer_reason="fatigue: 3 emails to lo1@pinnacle.example.com in 7 days (limit 3)",
        )
        set_enrollment(world, job_id, third, status="stopped", stop_reason="replied")
        set_enrollment(world, job_id, fourth, status="stopped", stop_reason="replied")
        set_enrollment(world, job_id, fifth, status="stopped", stop_reason="re-engaged: new order")
        set_enrollment(world, job_id, sixth, status="completed", step=1)

        status = answer_to(world, f"status {job_id}")

    stamp = int(due.timestamp())
    assert status == (
        f"*#{job_id}* Q4 lender win-back · launch — `running` · 0 cards, 0 approved, 0 sent\n"
        "*Contacts:* 6\n"
        "• 2 active — 1 with a step under way (its card waits for review); next step due "
        f"<!date^{stamp}^{{date_short_pretty}} {{time}}|Sun 2026-11-29 15:00 UTC>\n"
        "      waiting: fatigue 1\n"
        "• 3 stopped — replied 2, re-engaged: new order 1\n"
        "• 1 completed every step"
    )


def test_a_paused_jobs_status_says_why_its_contacts_wait(world: SlackWorld) -> None:
    job_id = launch(world)
    answer_to(world, f"pause {job_id}")
    for contact_id in world.contact_ids:
        set_enrollment(world, job_id, contact_id, status="paused", stop_reason="job paused")

    status = answer_to(world, f"status {job_id}")

    assert status.splitlines()[1:] == ["*Contacts:* 3", "• 3 paused — job paused 3"]


# --- /campaign launch … --dry-run ---------------------------------------------------------------


def test_a_dry_run_launches_nothing_and_shows_when_each_first_step_goes_out(
    world: SlackWorld, clock: FixedClock
) -> None:
    # Wed 2026-11-25 15:00 UTC; Thursday is Thanksgiving. A half-hour window shows the zones:
    # 09:00 in Texas is inside it, 07:00 in California before it, 10:00 in New York after it.
    la, ny, tx = world.contact_ids
    with world.session_factory() as s:
        s.execute(
            update(m.Contact).where(m.Contact.id == la).values(timezone="America/Los_Angeles")
        )
        s.execute(update(m.Contact).where(m.Contact.id == ny).values(state="NY"))
        s.commit()
    with UnitOfWork(world.session_factory) as uow:
        uow.cadence.save_settings(
            world.org_id, CadenceSettings(window_start="09:00", window_end="09:30")
        )
        uow.commit()

    preview = answer_to(world, "launch Q4 lender win-back --dry-run", command="/campaign")

    assert preview == (
        "🔎 *Dry run of Q4 lender win-back*: nothing was launched.\n"
        "*Audience:* 3 contacts.\n"
        "*Cadence* (days after the previous step): step 1 · day 0 · email\n"
        "*First step* — the send window is 09:00–09:30 Mon–Fri in each contact's time zone, "
        "US public holidays skipped:\n"
        "• Dana0 Whitfield (lo0@pinnacle.example.com) — Wed 2026-11-25 09:00 PST · "
        "America/Los_Angeles: the contact's time zone\n"
        "• Dana1 Whitfield (lo1@pinnacle.example.com) — Fri 2026-11-27 09:00 EST · "
        "America/New_York: the time zone of the contact's state\n"
        "• Dana2 Whitfield (lo2@pinnacle.example.com) — Wed 2026-11-25 09:00 CST · "
        "America/Chicago: the time zone of the contact's state\n"
        "`/campaign launch Q4 lender win-back` launches it; the first step's emails are "
        "drafted for review at once and go out once approved, inside the window."
    )
    with world.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(m.Job)) == 0
        campaign = s.get(m.MarketingCampaign, world.campaign_id)
        assert campaign is not None
        assert campaign.status == "draft"


def test_a_dry_run_of_a_campaign_with_an_open_job_warns_that_a_launch_would_be_refused(
    world: SlackWorld,
) -> None:
    job_id = launch(world)

    preview = answer_to(world, "launch —dry-run Q4 lender win-back", command="/campaign")

    assert preview.splitlines()[-1] == (
        f"⚠️ job #{job_id} of this campaign is running; a launch is refused until it finishes "
        "or is cancelled"
    )
    assert world.latest_job_id() == job_id


def test_a_dry_run_flag_elsewhere_and_an_unknown_campaign_are_refused_clearly(
    world: SlackWorld,
) -> None:
    misplaced = answer_to(world, "status Q4 lender win-back --dry-run", command="/campaign")
    unknown = answer_to(world, "launch Q5 --dry-run", command="/campaign")
    nameless = answer_to(world, "launch --dry-run", command="/campaign")

    assert misplaced.startswith("`--dry-run` goes with `/campaign launch`.")
    assert unknown == "⚠️ no campaign named “Q5”; `/campaign list` shows them"
    assert nameless.startswith("`/campaign launch --dry-run` needs a campaign name or id.")


# --- the guard's notice -------------------------------------------------------------------------


def spike_bounces(world: SlackWorld, clock: FixedClock, job_id: int) -> None:
    """Forty sends this week, three of them hard bounces; the fourth contact is due."""
    *bounced, due = world.contact_ids
    with world.session_factory() as s:
        for n in range(40):
            s.add(
                m.EmailSend(
                    org_id=world.org_id,
                    job_id=job_id,
                    message_id=f"<guard-{job_id}-{n}@lonestar.example.com>",
                    to_email=f"lo{n}@pinnacle.example.com",
                    subject="Turn times",
                    status="sent",
                    sent_at=clock.now() - timedelta(days=2),
                )
            )
        s.commit()
    for contact_id in bounced:
        set_enrollment(
            world,
            job_id,
            contact_id,
            status="stopped",
            stop_reason="bounced",
            updated_at=clock.now() - timedelta(hours=3),
        )
    set_enrollment(
        world,
        job_id,
        due,
        step=1,
        last_step_at=clock.now() - timedelta(days=5),
        next_due_at=clock.now() - timedelta(minutes=1),
    )


def test_a_job_the_guard_pauses_tells_its_review_channel_what_to_do(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> None:
    with slack_world(committed_engine, served_slack, clock, contacts=4) as world:
        job_id = launch(world)
        spike_bounces(world, clock, job_id)
        before = len(world.slack.messages(REVIEW_CHANNEL))

        report = world.runtime.cadence_scheduler.run_once()

        assert report is not None
        assert report.jobs_paused == [job_id]
        posted = wait_until(
            lambda: world.slack.messages(REVIEW_CHANNEL)[before:], what="guard notice"
        )
        assert [msg.text for msg in posted] == [
            f"⏸️ Job #{job_id} (Q4 lender win-back · launch) paused itself: 3 hard bounces in "
            f"40 sends (7.5%, limit 5.0%). Clean the list, then `/job resume {job_id}`."
        ]
        assert job_status(world, job_id) == "paused"


def test_the_guards_notice_goes_to_the_owner_when_the_jobs_channel_is_gone(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> None:
    with slack_world(committed_engine, served_slack, clock, contacts=4) as world:
        answer_to(world, "list")  # Maria's first command links her Slack user
        with world.session_factory() as s:
            maria = s.scalars(select(m.User.id).where(m.User.slack_user_id == REP)).one()
        jobs = world.runtime.outreach.jobs
        job = jobs.create_job(
            world.org_id,
            CreateJobRequest.model_validate(
                {
                    "name": "Title companies",
                    "params": {
                        "target": {"contact_ids": world.contact_ids},
                        "templates": [{"template_id": world.template_id}] * 2,
                        "cadence": {"days": [0, 4]},
                        "review_channel_id": "C0DELETED",
                    },
                }
            ),
            owner_id=maria,
        )
        jobs.plan_job(world.org_id, job.id)
        spike_bounces(world, clock, job.id)

        assert world.runtime.cadence_scheduler.run_once() is not None

        dm = wait_until(lambda: world.slack.messages(REP), what="guard notice by DM")
        assert [msg.text for msg in dm] == [
            f"⏸️ Job #{job.id} (Title companies) paused itself: 3 hard bounces in 40 sends "
            f"(7.5%, limit 5.0%). Clean the list, then `/job resume {job.id}`."
        ]
