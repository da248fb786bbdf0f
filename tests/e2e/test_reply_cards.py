"""Replies become cards (issue 12): a contact's reply to a campaign email, delivered to the
rep's Gmail stand-in, pushed and run through the inbound pipeline, makes exactly one card
linked to the contact, client, job, send and inbound message, with the email's context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.outreach import Actor, CardRefused
from storage import models as m
from tests.e2e.test_inbound_understanding import (
    AMC_ORDER,
    POSITIVE,
    Inbound,
    inbound_world,
    labelled,
)
from tests.support.gmail_app import DANA, REP_EMAIL
from tests.support.google import GoogleServer, make_email

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
