"""The whole outbound path: a signed Slack click ends with one email in the rep's Gmail."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from handlers.slack.ids import ActionId
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.gmail_app import connect_gmail, google_settings, parse_raw
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, REVIEW_CHANNEL, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow
REP_EMAIL = "maria@lonestar.example.com"


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=2, extra_settings=google_settings(google)
    ) as built:
        yield built


def connect_rep_gmail(world: SlackWorld, google: GoogleServer) -> None:
    """The rep connects their mailbox through the consent flow, as from the App Home."""
    with world.session_factory() as session:
        rep_id = ensure_user(session, world.org_id, email=REP_EMAIL, name="Maria Lopez")
        _, token = create_token(session, world.org_id, name="rep", user_id=rep_id)
        session.commit()
    assert connect_gmail(world.client, google.google, REP_EMAIL, token=token).status_code == 200


def test_an_approved_card_is_sent_once_from_the_reps_gmail_and_the_message_says_so(
    world: SlackWorld, google: GoogleServer
) -> None:
    connect_rep_gmail(world, google)
    world.command("launch Q4 lender win-back")
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch")
    world.wait_for_tasks(world.latest_job_id(), 2)
    world.run_worker()
    message = world.card_messages()[0]
    value = world.button(message, ActionId.APPROVE)["value"]
    card_id = json.loads(value)["card"]

    world.click(ActionId.APPROVE, value, message_ts=message.ts)
    world.click(ActionId.APPROVE, value, message_ts=message.ts)

    sent = wait_until(lambda: google.google.gmail.sent(REP_EMAIL), what="email sent")
    text = wait_until(
        lambda: (
            "Sent by" in json.dumps(world.slack.messages(REVIEW_CHANNEL)[0].blocks)
            and json.dumps(world.slack.messages(REVIEW_CHANNEL)[0].blocks, ensure_ascii=False)
        ),
        what="message updated",
    )
    assert len(sent) == 1
    email = parse_raw(sent[0].raw)
    assert email["To"].addresses[0].addr_spec == "lo0@pinnacle.example.com"
    assert email["Subject"] == "Turn times in TX are down, Dana0"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"✅ Sent by <@{REP}>" in text
    with world.session_factory() as session:
        card = session.get(m.Card, card_id)
        send = session.scalars(select(m.EmailSend).where(m.EmailSend.card_id == card_id)).one()
        job = session.get(m.Job, card.job_id if card else 0)
    assert card is not None
    assert card.state == "done"
    assert send.status == "sent"
    assert send.message_id == email["Message-ID"]
    assert job is not None
    assert (job.emails_sent, job.cards_executed) == (1, 1)
