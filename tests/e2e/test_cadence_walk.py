"""A campaign walked through its cadence (issue 13), through the real Slack app and the
Gmail stand-in, with a clock the test moves: launched with `/campaign launch` on Wednesday
2026-11-25 (the day before Thanksgiving), step 1 approved and sent from the rep's Gmail;
the cadence tick then drafts step 2 for Monday (day 4 is a Sunday), step 3 for the Monday
after (day 10 counts from when step 2 went out) and step 4 three weeks later, each posted
for approval in the review channel and sent, on approval, in the Gmail thread of step 1
(threadId, In-Reply-To and References). The enrollment then completes and the job succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from handlers.slack.ids import ActionId
from storage import models as m
from tests.e2e.test_slack_to_gmail import REP_EMAIL, connect_rep_gmail
from tests.support.gmail_app import google_settings, parse_raw
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

SUBJECTS = [
    "Turn times in {{ state }} are down, {{ first_name }}",
    "Following up, {{ first_name }}",
    "A quick idea for {{ company_name }}",
    "Should I close your file, {{ first_name }}?",
]


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=1, extra_settings=google_settings(google)
    ) as built:
        with built.session_factory() as session:
            campaign = session.get(m.MarketingCampaign, built.campaign_id)
            assert campaign is not None
            ids = [built.template_id]
            for n, subject in enumerate(SUBJECTS[1:], start=2):
                template = m.EmailTemplate(
                    org_id=built.org_id,
                    name=f"Win-back {n}",
                    category="campaign",
                    subject=subject,
                    body=f"Hi {{{{ first_name }}}},\n\nStep {n}.\n\n{{{{ rep_name }}}}",
                    variables=[],
                )
                session.add(template)
                session.flush()
                ids.append(template.id)
            campaign.email_template_ids = ids
            session.commit()
        yield built


def approve_newest_card(world: SlackWorld, google: GoogleServer, sent_before: int) -> None:
    """Approve the newest card in the review channel and wait for its email."""
    message = world.card_messages()[-1]
    value = world.button(message, ActionId.APPROVE)["value"]
    world.click(ActionId.APPROVE, value, message_ts=message.ts)
    wait_until(
        lambda: len(google.google.gmail.sent(REP_EMAIL)) == sent_before + 1, what="email sent"
    )
    # The card follows its send (the outbox's listener), and the step ends with it.
    wait_until(lambda: enrollment(world).step == sent_before + 1, what="the step ended")


def tick(world: SlackWorld, clock: FixedClock, at: datetime) -> dict[str, object]:
    clock._at = at
    report = world.runtime.outreach.cadences.tick().as_dict()
    world.run_worker()
    return report


def enrollment(world: SlackWorld) -> m.Enrollment:
    with world.session_factory() as session:
        return session.scalars(select(m.Enrollment)).one()


def test_a_campaign_walks_day_0_4_10_21_in_one_gmail_thread(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    connect_rep_gmail(world, google)
    world.command("launch Q4 lender win-back")
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch")
    world.wait_for_tasks(world.latest_job_id(), 1)
    world.run_worker()
    approve_newest_card(world, google, 0)

    # Saturday: step 2 (day 4, a Sunday) is not due; it waits for Monday 09:00 in Chicago.
    report = tick(world, clock, datetime(2026, 11, 28, 18, 0, tzinfo=UTC))
    assert (report["claimed"], report["deferred"], report["ran"]) == (1, 1, 0)
    row = enrollment(world)
    assert row.next_due_at == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert row.defer_reason == "step 2 is due Mon 2026-11-30 09:00 CST"
    assert len(world.card_messages()) == 1

    report = tick(world, clock, datetime(2026, 11, 30, 15, 1, tzinfo=UTC))
    assert report["ran"] == 1
    text = json.dumps(world.card_messages()[-1].blocks)
    assert "Step 2 of 4" in text
    # The zone the step was scheduled in, and why (the contact's state, Texas).
    assert "Scheduled in America/Chicago: the time zone of the contact's state" in text
    approve_newest_card(world, google, 1)

    # Day 10 is six days after step 2 went out (Monday 11-30): Sunday, so Monday 12-07.
    assert tick(world, clock, datetime(2026, 12, 6, 15, 1, tzinfo=UTC))["ran"] == 0
    assert tick(world, clock, datetime(2026, 12, 7, 15, 1, tzinfo=UTC))["ran"] == 1
    approve_newest_card(world, google, 2)
    # Day 21, eleven days after step 3: Friday 12-18.
    assert tick(world, clock, datetime(2026, 12, 18, 15, 1, tzinfo=UTC))["ran"] == 1
    approve_newest_card(world, google, 3)

    sent = [parse_raw(s.raw) for s in google.google.gmail.sent(REP_EMAIL)]
    threads = {s.thread_id for s in google.google.gmail.sent(REP_EMAIL)}
    assert len(sent) == 4
    assert len(threads) == 1
    first_id = sent[0]["Message-ID"]
    for later in sent[1:]:
        assert first_id in later["References"]
        assert later["In-Reply-To"] is not None
    assert sent[1]["In-Reply-To"] == first_id
    assert [e["Subject"] for e in sent][1] == "Following up, Dana0"

    row = enrollment(world)
    assert (row.status, row.step, row.next_due_at) == ("completed", 4, None)

    def job() -> m.Job:
        with world.session_factory() as session:
            row = session.get(m.Job, world.latest_job_id())
            assert row is not None
            return row

    wait_until(lambda: job().status == "succeeded", what="the job finished")
    assert job().emails_sent == 4
