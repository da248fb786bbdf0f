"""Replies become cards (issue 12): a contact's reply to a campaign email, delivered to the
rep's Gmail stand-in, pushed and run through the inbound pipeline, makes exactly one card
linked to the contact, client, job, send and inbound message; a reply card is drafted,
posted to the owner's DM in the Slack stand-in, and a signed Approve sends one answer in
the contact's Gmail thread; an AMC order makes a card for a person, never sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.outreach import Actor, CardRefused
from handlers.slack.ids import ActionId
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID
from storage import models as m
from tests.e2e.test_inbound_understanding import (
    AMC_ORDER,
    POSITIVE,
    Inbound,
    inbound_world,
    labelled,
)
from tests.support.accounts import link_slack_team
from tests.support.gmail_app import DANA, REP_EMAIL
from tests.support.google import GoogleServer, make_email
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import REP, SIGNING_SECRET

pytestmark = pytest.mark.slow


@pytest.fixture
def inbound(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[Inbound]:
    with inbound_world(engine, session_factory, clock, google) as built:
        yield built


def _cards(inbound: Inbound) -> list[m.Card]:
    with inbound.sessions() as session:
        return list(session.scalars(select(m.Card).order_by(m.Card.id)))


def _tasks(inbound: Inbound, kind: str) -> list[m.JobTask]:
    with inbound.sessions() as session:
        return list(session.scalars(select(m.JobTask).where(m.JobTask.kind == kind)))


def test_a_contact_s_reply_makes_one_reply_card_with_its_context(inbound: Inbound) -> None:
    body = labelled(POSITIVE)["body"]
    row = inbound.deliver(inbound.reply(body))

    (card,) = _cards(inbound)
    assert (card.type, card.state, card.inbound_email_id) == ("reply_to_email", "suggested", row.id)
    (draft_task,) = _tasks(inbound, "draft_reply")
    assert (draft_task.job_id, draft_task.input) == (
        inbound.job_id,
        {"card_id": card.id, "inbound_email_id": row.id},
    )
    assert (card.contact_id, card.client_id, card.job_id) == (
        inbound.world.contact_ids[DANA],
        row.client_id,
        inbound.job_id,
    )
    assert card.enrollment_id == inbound.enrollments[DANA]
    payload = card.action_payload
    assert (payload["from_email"], payload["subject"]) == (DANA, "Re: Turn times")
    # The reply without the quoted history, as the pipeline read it.
    assert payload["reply_text"] == row.reply_text
    assert payload["reply_text"].startswith("Yes, send me your turn times")
    assert len(payload["reply_text"]) < len(body)
    assert (payload["category"], payload["intent"], payload["sentiment"]) == (
        row.category,
        row.intent,
        row.sentiment,
    )
    assert payload["confidence"] == pytest.approx(row.confidence)
    assert (payload["email_send_id"], payload["campaign_id"]) == (
        inbound.send_id,
        inbound.campaign_id,
    )
    assert payload["gmail_thread_id"] == inbound.send_thread_id

    # Processed again (a reclassification): the message keeps its one card.
    counts = inbound.world.runtime.understanding.requeue(since=datetime(2020, 1, 1, tzinfo=UTC))
    assert counts.processed >= 1
    inbound.world.runtime.inbound_worker.run_until_idle()
    assert [c.id for c in _cards(inbound)] == [card.id]


def test_an_amc_order_from_a_contact_makes_a_card_for_a_person(inbound: Inbound) -> None:
    order = labelled(AMC_ORDER)
    row = inbound.deliver(inbound.reply(order["body"], subject=order["subject"]))

    assert row.category == "AMC_ORDER"
    (card,) = _cards(inbound)
    assert (card.type, card.state, card.inbound_email_id) == (
        "needs_human_response",
        "in_review",
        row.id,
    )
    assert card.action_payload["entities"]["order_numbers"] == ["AO-482913"]
    assert card.rationale == "AMC order: a person handles orders"
    (post,) = _tasks(inbound, "post_card")
    assert (post.job_id, post.input) == (inbound.job_id, {"card_id": card.id})


def test_our_rep_s_own_mail_and_automatic_mail_make_no_card(inbound: Inbound) -> None:
    # The copy of our campaign email in the rep's mailbox (label SENT) was processed too.
    inbound.push_and_run()
    auto = inbound.reply("I am out of the office until Monday.", subject="Automatic reply")
    inbound.deliver(auto)

    assert _cards(inbound) == []


def test_a_drafted_reply_approved_is_sent_once_in_the_contact_s_thread(inbound: Inbound) -> None:
    dana_says = "<reply-1@mail.pinnacle.example>"
    raw = make_email(
        sender=DANA,
        to=REP_EMAIL,
        subject="Re: Turn times",
        body=labelled(POSITIVE)["body"],
        in_reply_to=inbound.send_message_id,
        references=[inbound.send_message_id],
        message_id=dana_says,
    )
    row = inbound.deliver(raw)
    assert row.message_id_header == dana_says
    world = inbound.world
    before = len(world.sent())
    world.runtime.run_tasks_until_idle()

    (card,) = _cards(inbound)
    assert card.state == "in_review"
    payload = card.action_payload
    assert (payload["to"], payload["subject"]) == (DANA, "Re: Turn times")
    assert payload["draft_source"] == "template"  # no Claude key: the template drafts
    assert payload["body"].strip()
    assert card.draft_fingerprint
    assert payload["in_reply_to"] == row.message_id_header
    assert payload["references"] == [inbound.send_message_id, row.message_id_header]

    rep = Actor(org_id=world.org_id, user_id=world.rep_id, role="member")
    review = world.runtime.outreach.review
    review.approve_card(rep, card.id, fingerprint=card.draft_fingerprint)
    world.drain()

    sent = world.sent()[before:]
    assert len(sent) == 1
    (answer,) = sent
    assert answer.thread_id == inbound.send_thread_id
    message = answer.message
    assert message["To"].endswith(f"<{DANA}>") or message["To"] == DANA
    assert message["Subject"] == "Re: Turn times"
    assert message["In-Reply-To"] == row.message_id_header
    assert message["References"].split() == [inbound.send_message_id, row.message_id_header]
    assert message["List-Unsubscribe"] is None  # a personal answer, not campaign mail
    (done,) = _cards(inbound)
    assert done.state == "done"
    (outbox_row,) = [s for s in world.sends() if s.card_id == card.id]
    assert (outbox_row.campaign_email, outbox_row.gmail_thread_id) == (
        False,
        inbound.send_thread_id,
    )

    # A second approval (a double click) sends nothing more.
    with pytest.raises(CardRefused):
        review.approve_card(rep, card.id, fingerprint=card.draft_fingerprint)
    world.drain()
    assert len(world.sent()) == before + 1


@pytest.fixture
def with_slack(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
    served_slack: ServedSlack,
) -> Iterator[tuple[Inbound, ServedSlack]]:
    """The inbound world with the Slack stand-in wired: cards are posted, clicks signed."""
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    settings: dict[str, object] = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }
    with inbound_world(engine, session_factory, clock, google, settings=settings) as built:
        with session_factory() as session:
            link_slack_team(session, built.world.org_id, DEFAULT_TEAM_ID)
            job = session.get(m.Job, built.job_id)
            assert job is not None
            # The job as a launch stores it (no review channel: cards go to the owner's DM).
            job.params = {
                "target": {"contact_ids": [built.world.contact_ids[DANA]]},
                "templates": [{"subject": "Turn times", "body": "Hi {{ first_name }}"}],
            }
            session.commit()
        yield built, served_slack


def _click(inbound: Inbound, action_id: str, value: str, *, channel: str, ts: str) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox-appraisals"},
        "user": {"id": REP, "username": "maria", "team_id": DEFAULT_TEAM_ID},
        "api_app_id": "A0SANDBOXAPP",
        "token": "deprecated",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "directmessage"},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "card_actions",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)})
    answer = inbound.world.client.post(
        "/slack/events",
        content=body.encode(),
        headers=signed_headers(body, signing_secret=SIGNING_SECRET),
    )
    assert answer.status_code == 200, answer.text


def _text(message: Any) -> str:
    """What the card message's sections say."""
    return "\n".join(
        str((block.get("text") or {}).get("text") or "")
        for block in message.blocks
        if block.get("type") == "section"
    )


def _buttons(message: Any) -> dict[str, dict[str, Any]]:
    return {
        str(element.get("action_id")): dict(element)
        for block in message.blocks
        for element in block.get("elements", []) or []
        if element.get("type") == "button"
    }


def test_a_reply_card_in_the_rep_s_dm_approved_sends_one_answer_in_the_thread(
    with_slack: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = with_slack
    dana_says = "<reply-2@mail.pinnacle.example>"
    raw = make_email(
        sender=DANA,
        to=REP_EMAIL,
        subject="Re: Turn times",
        body=labelled(POSITIVE)["body"],
        in_reply_to=inbound.send_message_id,
        references=[inbound.send_message_id],
        message_id=dana_says,
    )
    row = inbound.deliver(raw)
    assert row.gmail_thread_id == inbound.send_thread_id  # Gmail threaded the reply
    world = inbound.world
    before = len(world.sent())
    world.runtime.run_tasks_until_idle()

    (card,) = _cards(inbound)
    assert card.action_payload["gmail_thread_id"] == inbound.send_thread_id
    # The job has no review channel: the card goes to the DM of the rep who owns it.
    (message,) = served.stand_in.messages(REP)
    assert card.action_payload["body"].strip()[:40] in _text(message)
    buttons = _buttons(message)
    assert ActionId.APPROVE in buttons
    _click(
        inbound,
        ActionId.APPROVE,
        str(buttons[ActionId.APPROVE]["value"]),
        channel=str(card.slack_channel_id or ""),
        ts=message.ts,
    )
    world.runtime.run_tasks_until_idle()
    world.drain()

    sent = world.sent()[before:]
    assert len(sent) == 1
    assert sent[0].thread_id == inbound.send_thread_id
    assert sent[0].message["In-Reply-To"] == dana_says
    assert sent[0].message["References"].split() == [inbound.send_message_id, dana_says]
    assert [c.state for c in _cards(inbound)] == ["done"]
    # The rep's Gmail shows one conversation: the campaign email, Dana's reply, the answer.
    thread = [
        f"<{stored.message_id_header}>"
        for stored in inbound.google.google.gmail.messages(REP_EMAIL)
        if stored.thread_id == inbound.send_thread_id
    ]
    assert thread == [inbound.send_message_id, dana_says, sent[0].message["Message-ID"]]


def test_an_amc_order_card_in_slack_has_no_send_button_and_is_never_sent(
    with_slack: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = with_slack
    order = labelled(AMC_ORDER)
    inbound.deliver(inbound.reply(order["body"], subject=order["subject"]))
    world = inbound.world
    before = len(world.sent())
    world.runtime.run_tasks_until_idle()

    (card,) = _cards(inbound)
    assert card.type == "needs_human_response"
    (message,) = served.stand_in.messages(REP)
    assert "AO-482913" in _text(message)
    approve = _buttons(message)[ActionId.APPROVE]
    assert "send" not in json.dumps(approve["text"]).lower()
    world.drain()
    assert len(world.sent()) == before


def test_a_reply_after_the_campaign_finished_is_still_drafted_posted_and_sent(
    with_slack: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = with_slack
    with inbound.sessions() as session:
        job = session.get(m.Job, inbound.job_id)
        assert job is not None
        job.status = "succeeded"
        session.commit()
    inbound.deliver(inbound.reply(labelled(POSITIVE)["body"]))
    world = inbound.world
    before = len(world.sent())
    world.runtime.run_tasks_until_idle()

    (card,) = _cards(inbound)
    assert card.state == "in_review"
    (message,) = served.stand_in.messages(REP)
    approve = _buttons(message)[ActionId.APPROVE]
    _click(
        inbound,
        ActionId.APPROVE,
        str(approve["value"]),
        channel=str(card.slack_channel_id or ""),
        ts=message.ts,
    )
    world.runtime.run_tasks_until_idle()
    world.drain()
    assert len(world.sent()) == before + 1
    assert world.sent()[-1].thread_id == inbound.send_thread_id
