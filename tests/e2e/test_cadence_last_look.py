"""The last look before a cadence follow-up, end to end: Slack, the app, the Gmail stand-in.

A two-step campaign is launched from Slack and its first email approved and sent from the
rep's Gmail. The contact's reply lands in the rep's mailbox, in the campaign's thread, but
its Pub/Sub push is lost (delivered into the stand-in without a push). Four days later the
cadence tick makes step 2 due: the look before drafting, or the look before sending, finds
the reply in Gmail, stores it for the inbound pipeline, and step 2 never leaves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.last_look import RECHECK_AFTER
from handlers.slack.ids import ActionId
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.gmail_app import connect_gmail, google_settings
from tests.support.google import GoogleServer, make_email
from tests.support.slack import ServedSlack
from tests.support.slack_app import REVIEW_CHANNEL, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow
REP_EMAIL = "maria@lonestar.example.com"
DANA = "lo0@pinnacle.example.com"
# Monday 2026-11-30 16:00 UTC: 10:00 in Texas, the first business-hours window after step
# 2's day (day 4 after Wednesday the 25th is a Sunday).
STEP_TWO_DUE = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=1, extra_settings=google_settings(google)
    ) as built:
        two_step_campaign(built)
        connect_rep_gmail(built, google)
        yield built


def two_step_campaign(world: SlackWorld) -> None:
    """Make the world's campaign two emails, day 0 and day 4."""
    with world.session_factory() as session:
        second = m.EmailTemplate(
            org_id=world.org_id,
            name="Win-back 2",
            category="campaign",
            subject="Following up, {{ first_name }}",
            body="Hi {{ first_name }},\n\nJust following up on my last note.\n\n{{ rep_name }}",
            variables=[],
        )
        session.add(second)
        session.flush()
        campaign = session.get(m.MarketingCampaign, world.campaign_id)
        assert campaign is not None
        campaign.email_template_ids = [world.template_id, second.id]
        campaign.cadence_days = [0, 4]
        session.commit()


def connect_rep_gmail(world: SlackWorld, google: GoogleServer) -> None:
    """The rep connects their mailbox through the consent flow, as from the App Home."""
    with world.session_factory() as session:
        rep_id = ensure_user(session, world.org_id, email=REP_EMAIL, name="Maria Lopez")
        _, token = create_token(session, world.org_id, name="rep", user_id=rep_id)
        session.commit()
    assert connect_gmail(world.client, google.google, REP_EMAIL, token=token).status_code == 200


def approve(world: SlackWorld, message: Any) -> int:
    """Click Approve on a card message; return the card's id."""
    value = world.button(message, ActionId.APPROVE)["value"]
    world.click(ActionId.APPROVE, value, message_ts=message.ts)
    return int(json.loads(value)["card"])


def card(world: SlackWorld, card_id: int) -> m.Card:
    with world.session_factory() as session:
        row = session.get(m.Card, card_id)
        assert row is not None
        return row


def enrollment(world: SlackWorld) -> m.Enrollment:
    with world.session_factory() as session:
        return session.scalars(select(m.Enrollment)).one()


def follow_up_cards(world: SlackWorld) -> list[m.Card]:
    with world.session_factory() as session:
        return list(
            session.scalars(select(m.Card).where(m.Card.type == "follow_up").order_by(m.Card.id))
        )


def inbound(world: SlackWorld) -> list[m.InboundEmail]:
    with world.session_factory() as session:
        return list(session.scalars(select(m.InboundEmail).order_by(m.InboundEmail.id)))


def launch_and_send_step_one(world: SlackWorld, google: GoogleServer) -> m.EmailSend:
    """Launch the campaign, approve its first email and wait until it left; return its send."""
    world.command("launch Q4 lender win-back")
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch")
    world.wait_for_tasks(world.latest_job_id(), 1)
    world.run_worker()
    card_id = approve(world, world.card_messages()[0])
    wait_until(lambda: card(world, card_id).state == "done", what="step 1 sent")
    assert len(google.google.gmail.sent(REP_EMAIL)) == 1
    with world.session_factory() as session:
        send = session.scalars(select(m.EmailSend)).one()
    assert send.gmail_thread_id
    return send


def reply_without_push(google: GoogleServer, send: m.EmailSend, *, at: datetime) -> str:
    """Dana answers in the campaign's thread; the push that announces it is lost."""
    raw = make_email(
        sender=f"Dana Whitfield <{DANA}>",
        to=REP_EMAIL,
        subject="Re: Turn times in TX are down, Dana0",
        body="Thanks Maria, yes please send me your fee schedule and turn times.",
        in_reply_to=send.message_id,
        references=[send.message_id],
        date=at,
    )
    gmail_id = google.google.gmail.deliver(REP_EMAIL, raw, internal_date=at)
    assert google.google.gmail.message(REP_EMAIL, gmail_id).thread_id == send.gmail_thread_id
    return gmail_id


def test_a_reply_whose_push_was_lost_is_found_before_step_two_is_drafted(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    send = launch_and_send_step_one(world, google)
    gmail_id = reply_without_push(google, send, at=clock.now() + timedelta(days=1))
    assert inbound(world) == []  # Salesbot never heard of it

    clock._at = STEP_TWO_DUE
    report = world.runtime.outreach.cadences.tick()
    assert (report.claimed, report.ran, report.tasks_created) == (1, 1, 1)
    world.run_worker()

    assert follow_up_cards(world) == []
    with world.session_factory() as session:
        task = session.scalars(
            select(m.JobTask).where(m.JobTask.kind == "draft_email", m.JobTask.step == 1)
        ).one()
    assert task.status == "cancelled"
    assert task.error_message == (
        f"a reply from {DANA} was found in Gmail at the last look; waiting for it to be read"
    )
    assert task.output == {"last_look": {"found": 1, "stored": 1, "unread": 0}}
    waiting = enrollment(world)
    assert (waiting.status, waiting.step) == ("active", 1)
    assert waiting.next_due_at == STEP_TWO_DUE + RECHECK_AFTER
    assert waiting.defer_reason == task.error_message
    [stored] = inbound(world)
    assert (stored.gmail_message_id, stored.status) == (gmail_id, "parsed")
    assert stored.gmail_thread_id == send.gmail_thread_id

    world.runtime.inbound_worker.run_until_idle()

    [read] = inbound(world)
    assert (read.status, read.from_email, read.email_send_id) == ("processed", DANA, send.id)
    stopped = enrollment(world)
    assert (stopped.status, stopped.stop_reason, stopped.stop_email_id) == (
        "stopped",
        "replied",
        read.id,
    )
    clock.advance(minutes=20)
    assert world.runtime.outreach.cadences.tick().claimed == 0
    world.run_worker()
    assert follow_up_cards(world) == []
    assert len(google.google.gmail.sent(REP_EMAIL)) == 1
    with world.session_factory() as session:
        job = session.scalars(select(m.Job)).one()
    assert job.last_error is None  # a reply found is no failure


def test_a_reply_found_just_before_sending_withdraws_the_approved_follow_up(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    send = launch_and_send_step_one(world, google)
    clock._at = STEP_TWO_DUE
    world.runtime.outreach.cadences.tick()
    world.run_worker()
    [drafted] = follow_up_cards(world)
    assert drafted.state == "in_review"  # nothing in Gmail yet: the draft was made
    message = world.card_messages()[-1]
    assert world.button(message, ActionId.APPROVE)
    gmail_id = reply_without_push(google, send, at=STEP_TWO_DUE + timedelta(minutes=5))

    clock.advance(minutes=10)
    card_id = approve(world, message)

    assert card_id == drafted.id
    withdrawn = wait_until(
        lambda: (row := card(world, card_id)).state == "withdrawn" and row, what="withdrawn"
    )
    assert withdrawn.withdrawn_reason == (
        f"Not sent: {DANA} replied after this step was drafted (the reply was found in Gmail "
        "just before sending). Read the reply first; the cadence judges this step again once "
        "Salesbot has read it."
    )
    assert len(google.google.gmail.sent(REP_EMAIL)) == 1
    with world.session_factory() as session:
        assert [row.id for row in session.scalars(select(m.EmailSend))] == [send.id]
    shown = wait_until(
        lambda: "Withdrawn" in (text := json.dumps(blocks_of(world, message.ts))) and text,
        what="message updated",
    )
    assert "replied after this step was drafted" in shown
    waiting = enrollment(world)
    assert (waiting.status, waiting.step) == ("active", 1)
    assert waiting.next_due_at == STEP_TWO_DUE + timedelta(minutes=10) + RECHECK_AFTER
    assert [(e.gmail_message_id, e.status) for e in inbound(world)] == [(gmail_id, "parsed")]

    world.runtime.inbound_worker.run_until_idle()

    stopped = enrollment(world)
    assert (stopped.status, stopped.stop_reason) == ("stopped", "replied")
    clock.advance(minutes=20)
    assert world.runtime.outreach.cadences.tick().claimed == 0
    assert len(follow_up_cards(world)) == 1
    assert len(google.google.gmail.sent(REP_EMAIL)) == 1


def test_without_a_reply_the_looks_find_nothing_and_step_two_is_sent(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    send = launch_and_send_step_one(world, google)
    clock._at = STEP_TWO_DUE
    world.runtime.outreach.cadences.tick()
    world.run_worker()
    [drafted] = follow_up_cards(world)

    approve(world, world.card_messages()[-1])

    wait_until(lambda: card(world, drafted.id).state == "done", what="step 2 sent")
    sent = google.google.gmail.sent(REP_EMAIL)
    assert len(sent) == 2
    assert sent[1].thread_id == send.gmail_thread_id
    assert inbound(world) == []
    looked = [c for c in google.google.gmail.calls if c.route == "threads.get"]
    assert len(looked) == 2  # before drafting, and before sending
    done = enrollment(world)
    assert (done.status, done.defer_reason) == ("completed", None)


def blocks_of(world: SlackWorld, ts: str) -> list[dict[str, Any]]:
    """The blocks a message of the review channel shows now."""
    for posted in world.slack.messages(REVIEW_CHANNEL):
        if posted.ts == ts:
            return list(posted.blocks or [])
    raise LookupError(ts)
