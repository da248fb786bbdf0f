"""Who sees a reply card (issue 12, "Who sees it" and "Bad input"), end to end: replies are
delivered to the rep's Gmail stand-in, pushed, run through the inbound pipeline, drafted and
posted through the Slack stand-in; `/triage` is sent signed as Slack signs it.

A reply to a campaign send lands in the DM of the rep whose mailbox received it, with the
thread's facts; a reply answering no campaign goes to the replies inbox job and is drafted,
posted and sent like the others; a rep without Slack has the card in the triage channel;
a channel Salesbot cannot see falls back to a DM and the card says so; an AMC order from a
stranger, or in a thread whose contact was deleted, makes a card for a person.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.outreach import Actor
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL_ID, DEFAULT_TEAM_ID
from storage import models as m
from tests.e2e.test_inbound_understanding import (
    AMC_ORDER,
    POSITIVE,
    Inbound,
    inbound_world,
    labelled,
)
from tests.support.accounts import ensure_user, link_slack_team
from tests.support.builders import make_order
from tests.support.gmail_app import DANA, RAY, REP_EMAIL
from tests.support.google import GoogleServer, make_email
from tests.support.slack import ServedSlack, signed_headers, slash_command_body
from tests.support.slack_app import OTHER_REP, REP, SIGNING_SECRET

pytestmark = pytest.mark.slow

ADMIN = "U0ANA0001"
ADMIN_EMAIL = "ana@lonestar.example.com"
OWNER_EMAIL = "jose@lonestar.example.com"
TRIAGE = "C0TRIAGE01"
PRIVATE = "C0PRIVATE1"
STRANGER = "orders@northstar-amc.example"
COMPLAINT = 113  # "To whom it may concern, I am writing to complain about the appraiser…"


@pytest.fixture
def routed(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
    served_slack: ServedSlack,
) -> Iterator[tuple[Inbound, ServedSlack]]:
    """The inbound world with Slack wired, an admin, a triage channel Salesbot is in, a
    private channel it was never invited to, and Pinnacle's order history."""
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    slack.add_user(OTHER_REP, "jose", OWNER_EMAIL, real_name="Jose Ruiz")
    slack.add_user(ADMIN, "ana", ADMIN_EMAIL, real_name="Ana Admin")
    slack.add_channel(TRIAGE, "replies")
    slack.add_channel(PRIVATE, "sales-private", is_private=True, is_member=False)
    settings: dict[str, object] = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }
    with inbound_world(engine, session_factory, clock, google, settings=settings) as built:
        with session_factory() as session:
            org_id = built.world.org_id
            link_slack_team(session, org_id, DEFAULT_TEAM_ID)
            ensure_user(session, org_id, email=ADMIN_EMAIL, name="Ana", role=UserRole.ADMIN)
            job = session.get(m.Job, built.job_id)
            assert job is not None
            # The job as a launch stores it (no review channel: cards go to the DM).
            job.params = {
                "target": {"contact_ids": [built.world.contact_ids[DANA]]},
                "templates": [{"subject": "Turn times", "body": "Hi {{ first_name }}"}],
            }
            org = session.get(m.Organization, org_id)
            contact = session.get(m.Contact, built.world.contact_ids[DANA])
            assert org is not None
            assert contact is not None
            lender = session.get(m.Client, contact.client_id)
            assert lender is not None
            for days in (400, 161):
                make_order(session, org, lender, ordered_at=clock.now() - timedelta(days=days))
            session.commit()
        yield built, served_slack


def _cards(inbound: Inbound) -> list[m.Card]:
    with inbound.sessions() as session:
        return list(session.scalars(select(m.Card).order_by(m.Card.id)))


def _job(inbound: Inbound, job_id: int | None) -> m.Job:
    with inbound.sessions() as session:
        job = session.get(m.Job, job_id)
        assert job is not None
        return job


def _context(message: Any) -> str:
    """What the context lines of a card message say."""
    return "\n".join(
        str(element.get("text") or "")
        for block in message.blocks
        if block.get("type") == "context"
        for element in block.get("elements", [])
    )


def _text(message: Any) -> str:
    """The words a person reads on a message: sections, their fields, context lines."""
    words: list[str] = []
    for block in message.blocks:
        if block.get("type") == "section":
            words.append(str((block.get("text") or {}).get("text") or ""))
            words.extend(str(field.get("text") or "") for field in block.get("fields") or ())
        elif block.get("type") == "context":
            words.extend(str(e.get("text") or "") for e in block.get("elements") or ())
    return "\n".join(words)


def _update(inbound: Inbound, change: Callable[[Session], None]) -> None:
    with inbound.sessions() as session:
        change(session)
        session.commit()


def _triage(inbound: Inbound, served: ServedSlack, text: str, *, user: str = ADMIN) -> str:
    """Send `/triage <text>` signed as Slack does; return the answer it got."""
    stand_in = served.stand_in
    before = len(stand_in.calls("response_url"))
    body = slash_command_body(
        "/triage",
        text,
        user_id=user,
        channel_id=DEFAULT_CHANNEL_ID,
        team_id=DEFAULT_TEAM_ID,
        trigger_id=stand_in.issue_trigger_id(user_id=user),
        response_url=stand_in.response_url(channel=DEFAULT_CHANNEL_ID, user=user),
    )
    answer = inbound.world.client.post(
        "/slack/events",
        content=body.encode(),
        headers=signed_headers(body, signing_secret=SIGNING_SECRET),
    )
    assert answer.status_code == 200, answer.text
    inbound.world.runtime.run_tasks_until_idle()
    (said,) = stand_in.calls("response_url")[before:]
    return str(said.params.get("text"))


def test_a_reply_to_a_campaign_send_lands_in_the_rep_s_dm_with_the_thread_s_facts(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed
    world = inbound.world
    # The send answered was step 2 of the cadence: its card was drafted by a step-1 task.
    with inbound.sessions() as session:
        task = m.JobTask(
            org_id=world.org_id, job_id=inbound.job_id, kind="follow_up", step=1, status="succeeded"
        )
        session.add(task)
        session.flush()
        card = m.Card(
            org_id=world.org_id,
            job_id=inbound.job_id,
            task_id=task.id,
            type="follow_up",
            state="done",
            priority="medium",
            title="Follow-up",
        )
        session.add(card)
        session.flush()
        send = session.get(m.EmailSend, inbound.send_id)
        assert send is not None
        send.card_id = card.id
        session.commit()

    inbound.deliver(inbound.reply(labelled(POSITIVE)["body"]))
    world.runtime.run_tasks_until_idle()

    reply = _cards(inbound)[-1]
    payload = reply.action_payload
    assert reply.job_id == inbound.job_id
    assert (payload["sender_user_id"], payload["campaign_name"], payload["step"]) == (
        world.rep_id,
        "Q4 win-back",
        1,
    )
    assert payload["client_history"] == "ordered 2 times, last order 161 days ago"
    assert (payload["routed_to"], payload["routing_note"]) == ("dm", None)
    (message,) = served.stand_in.messages(REP)
    assert reply.slack_message_ts == message.ts
    assert "Q4 win-back" in _text(message)


def test_a_reply_answering_no_campaign_goes_to_the_inbox_job_is_posted_and_sent(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed
    world = inbound.world
    ray_says = "<fresh-1@mail.pinnacle.example>"
    raw = make_email(
        sender=RAY,
        to=REP_EMAIL,
        subject="Fee schedule for Hays County?",
        body=labelled(POSITIVE)["body"],
        message_id=ray_says,
    )
    row = inbound.deliver(raw)
    before = len(world.sent())
    world.runtime.run_tasks_until_idle()

    (card,) = _cards(inbound)
    inbox = _job(inbound, card.job_id)
    assert (inbox.kind, inbox.name, inbox.status) == ("inbox", "Replies", "running")
    assert (card.type, card.state, card.contact_id) == (
        "reply_to_email",
        "in_review",
        world.contact_ids[RAY],
    )
    assert card.action_payload["sender_user_id"] == world.rep_id
    assert card.action_payload["campaign_name"] is None
    assert card.action_payload["routed_to"] == "dm"
    (message,) = served.stand_in.messages(REP)
    assert card.slack_message_ts == message.ts

    # The rep sends it: from the mailbox that received it, in Ray's thread.
    rep = Actor(org_id=world.org_id, user_id=world.rep_id, role="rep")
    world.runtime.outreach.review.approve_card(rep, card.id, fingerprint=card.draft_fingerprint)
    world.drain()
    (answer,) = world.sent()[before:]
    assert answer.thread_id == row.gmail_thread_id
    assert answer.message["In-Reply-To"] == ray_says
    assert REP_EMAIL in answer.message["From"]
    # The inbox runs on with every card decided: it never finishes.
    world.runtime.run_tasks_until_idle()
    assert _job(inbound, card.job_id).status == "running"
    jobs = world.client.get("/api/agent/jobs", headers=world.auth()).json()
    assert {j["id"]: j["kind"] for j in jobs} == {inbound.job_id: "campaign", inbox.id: "inbox"}
    campaigns = world.client.get("/api/agent/jobs?kind=campaign", headers=world.auth()).json()
    assert [j["id"] for j in campaigns] == [inbound.job_id]
    refused = world.client.post(f"/api/agent/jobs/{inbox.id}/cancel", headers=world.auth())
    assert refused.status_code == 409
    assert "is the replies inbox" in refused.json()["error"]["message"]


def test_after_triage_set_a_rep_without_slack_gets_the_card_in_the_triage_channel(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed
    said = _triage(inbound, served, f"set <#{TRIAGE}|replies>")
    assert said.startswith(f"✅ Reply cards nobody else takes now go to <#{TRIAGE}>.")

    def no_slack(session: Session) -> None:
        rep = session.get(m.User, inbound.world.rep_id)
        assert rep is not None
        rep.slack_user_id = None

    _update(inbound, no_slack)
    order = labelled(AMC_ORDER)
    inbound.deliver(inbound.reply(order["body"], subject=order["subject"]))
    inbound.world.runtime.run_tasks_until_idle()

    (card,) = _cards(inbound)
    assert card.type == "needs_human_response"
    assert (card.slack_channel_id, card.action_payload["routed_to"]) == (TRIAGE, "triage_channel")
    (message,) = served.stand_in.messages(TRIAGE)
    assert "AO-482913" in _text(message)
    assert served.stand_in.messages(REP) == []


def test_with_nowhere_to_post_the_card_waits_with_the_reason_until_triage_is_set(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed

    def no_slack(session: Session) -> None:
        rep = session.get(m.User, inbound.world.rep_id)
        assert rep is not None
        rep.slack_user_id = None

    _update(inbound, no_slack)
    order = labelled(AMC_ORDER)
    inbound.deliver(inbound.reply(order["body"], subject=order["subject"]))
    inbound.world.runtime.run_tasks_until_idle()

    (waiting,) = _cards(inbound)
    assert (waiting.state, waiting.slack_message_ts) == ("in_review", None)
    reason = waiting.action_payload["slack_error"]
    assert reason.startswith("Slack: there is nowhere to post this card")
    assert waiting.action_payload["routing_note"] == reason
    assert f"card #{waiting.id} could not be posted" in (
        _job(inbound, waiting.job_id).last_error or ""
    )

    said = _triage(inbound, served, f"set <#{TRIAGE}|replies>")
    inbound.world.runtime.run_tasks_until_idle()

    assert "1 reply card that had nowhere to go will be posted now." in said
    (posted,) = _cards(inbound)
    assert (posted.slack_channel_id, posted.action_payload["routed_to"]) == (
        TRIAGE,
        "triage_channel",
    )
    assert "slack_error" not in posted.action_payload
    assert posted.action_payload["routing_note"] is None
    (message,) = served.stand_in.messages(TRIAGE)
    assert "AO-482913" in _text(message)


def test_a_review_channel_salesbot_cannot_see_falls_back_to_the_owner_s_dm_and_says_so(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed
    world = inbound.world

    def private_review(session: Session) -> None:
        # Jose launched the campaign, into a private channel Salesbot was never invited
        # to; the message arrives in Maria's mailbox, and Maria has no Slack user.
        job = session.get(m.Job, inbound.job_id)
        maria = session.get(m.User, world.rep_id)
        jose = session.get(m.User, world.other_rep_id)
        assert job is not None
        assert maria is not None
        assert jose is not None
        job.params = {**job.params, "review_channel_id": PRIVATE}
        job.owner_id = jose.id
        jose.slack_user_id = OTHER_REP
        maria.slack_user_id = None

    _update(inbound, private_review)
    order = labelled(AMC_ORDER)
    inbound.deliver(inbound.reply(order["body"], subject=order["subject"]))
    world.runtime.run_tasks_until_idle()

    (card,) = _cards(inbound)
    note = (
        f"Posted here because Salesbot cannot see <#{PRIVATE}> (private, or deleted): "
        "/invite @Salesbot there"
    )
    assert (card.action_payload["routed_to"], card.action_payload["routing_note"]) == ("dm", note)
    assert card.action_payload["sender_user_id"] == world.rep_id
    (message,) = served.stand_in.messages(OTHER_REP)
    assert note in _context(message)
    assert served.stand_in.messages(PRIVATE) == []


def test_an_amc_order_from_an_unknown_sender_makes_a_card_for_a_person_in_the_inbox(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed
    world = inbound.world
    order = labelled(AMC_ORDER)
    raw = make_email(sender=STRANGER, to=REP_EMAIL, subject=order["subject"], body=order["body"])
    row = inbound.deliver(raw)
    before = len(world.sent())
    world.runtime.run_tasks_until_idle()

    assert (row.category, row.contact_id) == ("AMC_ORDER", None)
    (card,) = _cards(inbound)
    assert (card.type, card.state, card.contact_id) == ("needs_human_response", "in_review", None)
    assert card.rationale == "AMC order: a person handles orders; " + (
        "the sender is not a contact: a person answers"
    )
    assert _job(inbound, card.job_id).kind == "inbox"
    (message,) = served.stand_in.messages(REP)
    assert "AO-482913" in _text(message)
    world.drain()
    assert len(world.sent()) == before
    detail = world.client.get(f"/api/inbound/emails/{row.id}", headers=world.auth()).json()
    assert (
        "the sender is not a contact: a card for a person in the replies inbox (AMC_ORDER)"
        in (detail["notes"])
    )


def test_anything_else_from_an_unknown_sender_makes_no_card_and_the_notes_say_why(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed
    world = inbound.world
    complaint = labelled(COMPLAINT)
    raw = make_email(
        sender=STRANGER, to=REP_EMAIL, subject=complaint["subject"], body=complaint["body"]
    )
    row = inbound.deliver(raw)
    world.runtime.run_tasks_until_idle()

    assert row.category == "CASE"
    assert _cards(inbound) == []
    detail = world.client.get(f"/api/inbound/emails/{row.id}", headers=world.auth()).json()
    assert (
        "the sender is not a contact: no card (only AMC_ORDER or OPPORTUNITY makes one)"
        in detail["notes"]
    )
    assert served.stand_in.messages(REP) == []


def test_a_reply_in_a_thread_whose_contact_was_deleted_makes_a_card_that_says_so(
    routed: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = routed
    world = inbound.world
    _update(
        inbound,
        lambda session: session.execute(
            delete(m.Contact).where(m.Contact.id == world.contact_ids[DANA])
        ),
    )
    order = labelled(AMC_ORDER)
    row = inbound.deliver(inbound.reply(order["body"], subject=order["subject"]))
    world.runtime.run_tasks_until_idle()

    assert (row.status, row.email_send_id, row.contact_id) == ("processed", inbound.send_id, None)
    (card,) = _cards(inbound)
    assert (card.type, card.contact_id, card.job_id) == (
        "needs_human_response",
        None,
        inbound.job_id,
    )
    assert card.rationale is not None
    assert card.rationale.endswith("the contact of this thread was deleted: a person answers")
    (message,) = served.stand_in.messages(REP)
    assert "the contact of this thread was deleted" in _text(message)
    detail = world.client.get(f"/api/inbound/emails/{row.id}", headers=world.auth()).json()
    assert any("the contact of this thread was deleted" in note for note in detail["notes"])
