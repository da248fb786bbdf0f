"""A multi-channel cadence end to end (issue 13): a campaign whose cadence is email (day 0)
→ LinkedIn (day 2) → call (day 5) is launched from Slack, its emails go out through Gmail,
the cadence tick makes each contact's LinkedIn card two days later, and signed Done / Skip
clicks update the card's message in place, record the touch and move the cadence on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from handlers.slack.ids import ActionId
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.gmail_app import connect_gmail, google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import (
    REP,
    REVIEW_CHANNEL,
    SlackWorld,
    slack_world,
    utc,
    wait_until,
)

pytestmark = pytest.mark.slow
REP_EMAIL = "maria@lonestar.example.com"
STEPS = [
    {"day": 0},
    {"day": 2, "channel": "linkedin"},
    {"day": 5, "channel": "call"},
]
# The Monday after the launch (Wednesday 2026-11-25), 10:00 in Texas: the LinkedIn step is
# due (day 2 fell on Friday; this is the next tick in business hours).
MONDAY = utc(2026, 11, 30, 16, 0)
WAIT = 30.0  # seconds: clicks run in the Slack worker's threads, on a shared machine


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=2, extra_settings=google_settings(google)
    ) as built:
        yield built


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def give_the_campaign_its_cadence(world: SlackWorld) -> None:
    """Email, then LinkedIn, then a call: set over the campaigns API, as a marketer would."""
    response = world.client.put(
        f"/api/marketing/campaigns/{world.campaign_id}",
        json={"channels": ["email", "linkedin"], "cadence": {"steps": STEPS}},
        headers={"Authorization": f"Bearer {world.api_token}"},
    )
    assert response.status_code == 200, response.text
    with world.session_factory() as session:
        contact = session.get(m.Contact, world.contact_ids[0])
        assert contact is not None
        contact.phone = "(512) 555-0142"
        session.commit()


def connect_rep_gmail(world: SlackWorld, google: GoogleServer) -> None:
    with world.session_factory() as session:
        rep_id = ensure_user(session, world.org_id, email=REP_EMAIL, name="Maria Lopez")
        _, token = create_token(session, world.org_id, name="rep", user_id=rep_id)
        session.commit()
    assert connect_gmail(world.client, google.google, REP_EMAIL, token=token).status_code == 200


def launch_and_send_the_emails(world: SlackWorld, google: GoogleServer, clock: FixedClock) -> int:
    """Launch from Slack, approve each contact's first email; return the job id. The
    approvals are a minute apart: the outbox spaces one mailbox's sends."""
    world.command("launch Q4 lender win-back")
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch")
    job_id = world.latest_job_id()
    world.wait_for_tasks(job_id, 2)
    world.run_worker()
    for message in world.card_messages():
        value = world.button(message, ActionId.APPROVE)["value"]
        world.click(ActionId.APPROVE, value, message_ts=message.ts)
        card_id = json.loads(value)["card"]
        # Sent and recorded before the clock moves: the outbox spaces the next send from it.
        wait_until(
            lambda card_id=card_id: card_state(world, card_id) == "done",
            timeout=WAIT,
            what="email sent",
        )
        clock.advance(minutes=1)
    assert len(google.google.gmail.sent(REP_EMAIL)) == 2
    wait_until(
        lambda: all(e.step == 1 for e in enrollments(world)), timeout=WAIT, what="step 0 ended"
    )
    return job_id


def card_state(world: SlackWorld, card_id: int) -> str:
    with world.session_factory() as session:
        return str(session.scalars(select(m.Card.state).where(m.Card.id == card_id)).one())


def enrollments(world: SlackWorld) -> list[m.Enrollment]:
    with world.session_factory() as session:
        return list(session.scalars(select(m.Enrollment).order_by(m.Enrollment.contact_id)))


def step_messages(world: SlackWorld) -> list[Any]:
    """The messages of the LinkedIn step cards, in contact order."""
    return [
        msg
        for msg in world.slack.messages(REVIEW_CHANNEL)
        if ActionId.STEP_DONE.value in dumps(msg.blocks) or "LinkedIn" in dumps(msg.blocks)
    ]


def message_now(world: SlackWorld, ts: str) -> str:
    (message,) = [m for m in world.slack.messages(REVIEW_CHANNEL) if m.ts == ts]
    return dumps(message.blocks)


def history(world: SlackWorld, contact_id: int) -> list[tuple[str, Any]]:
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.ContactEngagementEvent)
            .where(m.ContactEngagementEvent.contact_id == contact_id)
            .order_by(m.ContactEngagementEvent.id)
        )
        return [(row.event, row.occurred_at) for row in rows]


def test_the_linkedin_step_comes_as_a_card_that_done_and_skip_settle_in_place(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    give_the_campaign_its_cadence(world)
    connect_rep_gmail(world, google)
    started = clock.now()
    job_id = launch_and_send_the_emails(world, google, clock)

    # Friday's step waits for Monday's tick (a weekend tick defers it to the window).
    clock.advance(days=3)  # Saturday
    assert world.runtime.outreach.cadences.tick().ran == 0
    clock.advance(seconds=(MONDAY - clock.now()).total_seconds())
    assert world.runtime.outreach.cadences.tick().ran == 2
    assert world.run_worker() == 4  # two cards drafted, two posted

    first, second = step_messages(world)
    text = dumps(first.blocks)
    assert "🔗  *Reach Dana0 Whitfield on LinkedIn* at Pinnacle Lending" in text
    assert "*So far*  Step 2 of 3 · Q4 lender win-back · after 1 email, no reply" in text
    assert "*Phone*  (512) 555-0142" in text
    assert (
        "<https://www.linkedin.com/search/results/people/?keywords=Dana0+Whitfield+Pinnacle+Lending"
        "|Search LinkedIn for Dana0 Whitfield at Pinnacle Lending>"
    ) in text
    assert "🕘 Times in America/Chicago: the time zone of the contact's state" in text
    assert [b["text"]["text"] for b in first.blocks[-1]["elements"]] == ["Done", "Skip"]

    # Done: the message says who and when, the touch is in the history, the call is next.
    clock.advance(minutes=42)
    done_value = world.button(first, ActionId.STEP_DONE)["value"]
    assert world.click(ActionId.STEP_DONE, done_value, message_ts=first.ts).status_code == 200
    done = wait_until(
        lambda: "✅ Done by" in message_now(world, first.ts) and message_now(world, first.ts),
        timeout=WAIT,
        what="the Done card updated",
    )
    assert f"✅ Done by <@{REP}> at <!date^{int(clock.now().timestamp())}^" in done
    assert ActionId.STEP_DONE.value not in done
    dana0, dana1 = world.contact_ids
    assert history(world, dana0) == [("sent", started), ("linkedin_touch", clock.now())]
    with world.session_factory() as session:
        contact = session.get(m.Contact, dana0)
        assert contact is not None
        assert contact.last_contacted_at == clock.now()
    after_done = enrollments(world)[0]
    assert (after_done.status, after_done.step, after_done.next_due_at) == (
        "active",
        2,
        clock.now(),
    )

    # Skip: the message says who skipped, nothing is recorded, the cadence moves on.
    skip_value = world.button(second, ActionId.STEP_SKIP)["value"]
    assert world.click(ActionId.STEP_SKIP, skip_value, message_ts=second.ts).status_code == 200
    skipped = wait_until(
        lambda: "Skipped" in message_now(world, second.ts) and message_now(world, second.ts),
        timeout=WAIT,
        what="the Skip card updated",
    )
    assert f"⏭️ Skipped by <@{REP}>" in skipped
    assert ActionId.STEP_SKIP.value not in skipped
    assert [event for event, _ in history(world, dana1)] == ["sent"]
    after_skip = enrollments(world)[1]
    assert (after_skip.status, after_skip.step, after_skip.last_step_at) == (
        "active",
        2,
        clock.now(),
    )
    with world.session_factory() as session:
        cards = session.scalars(
            select(m.Card).where(m.Card.job_id == job_id, m.Card.type == "linkedin_touch")
        ).all()
        assert sorted((c.contact_id, c.state, c.rejected_reason) for c in cards) == [
            (dana0, "done", None),
            (dana1, "rejected", "skipped"),
        ]

    # The next tick, three days later, brings each contact's call card.
    clock.advance(days=3)
    assert world.runtime.outreach.cadences.tick().ran == 2
