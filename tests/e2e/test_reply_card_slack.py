"""What a rep sees and does on a reply card in Slack: a contact's reply, delivered to the
rep's Gmail stand-in and run through the pipeline, becomes a card in the rep's DM in the
Slack stand-in showing who wrote, their client's history, the campaign step, the reply,
the classification and the draft; its menus snooze it (the snooze sweep posts it again
as a new message), show the Gmail thread and the contact in modals; the App Home lists
reply cards first and snoozed ones as snoozed. Clicks are signed as Slack signs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from handlers.slack.ids import ActionId, CallbackId, OverflowChoice
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID, Message, View
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
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import REP, SIGNING_SECRET

pytestmark = pytest.mark.slow

HISTORY = "ordered 43 times, last order 161 days ago"


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
    served_slack: ServedSlack,
) -> Iterator[tuple[Inbound, ServedSlack]]:
    """The inbound world with the Slack stand-in wired: cards go to the rep's DM."""
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez", tz="America/Chicago")
    settings: dict[str, object] = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }
    with inbound_world(engine, session_factory, clock, google, settings=settings) as built:
        with session_factory() as session:
            link_slack_team(session, built.world.org_id, DEFAULT_TEAM_ID)
            job = session.get(m.Job, built.job_id)
            contact = session.get(m.Contact, built.world.contact_ids[DANA])
            assert job is not None
            assert contact is not None
            # The job as a launch stores it (no review channel: cards go to the owner's DM).
            job.params = {
                "target": {"contact_ids": [contact.id]},
                "templates": [{"subject": "Turn times", "body": "Hi {{ first_name }}"}],
            }
            contact.first_name, contact.last_name = "Dana", "Whitfield"
            contact.title = "Loan Officer"
            session.commit()
        yield built, served_slack


def _card(inbound: Inbound) -> m.Card:
    with inbound.sessions() as session:
        return session.scalars(select(m.Card)).one()


def _posted_card(inbound: Inbound, body: str, *, subject: str = "Re: Turn times") -> m.Card:
    """Deliver Dana's message; give its card the context the card conversion adds (the
    client's history, the campaign and step); draft and post it."""
    inbound.deliver(inbound.reply(body, subject=subject))
    with inbound.sessions() as session:
        card = session.scalars(select(m.Card)).one()
        card.action_payload = {
            **card.action_payload,
            "client_history": HISTORY,
            "campaign_name": "Q4 win-back",
            "step": 1,
        }
        session.commit()
    inbound.world.runtime.run_tasks_until_idle()
    return _card(inbound)


def _interact(inbound: Inbound, action: dict[str, Any], *, container: dict[str, Any]) -> str:
    """Send a signed block_actions payload as Slack does; return its trigger id."""
    trigger = f"{time.time_ns()}.{DEFAULT_TEAM_ID}.trigger"
    payload = {
        "type": "block_actions",
        "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox-appraisals"},
        "user": {"id": REP, "username": "maria", "team_id": DEFAULT_TEAM_ID},
        "api_app_id": "A0SANDBOXAPP",
        "token": "deprecated",
        "trigger_id": trigger,
        "container": container,
        "actions": [{**action, "block_id": "card_actions", "action_ts": f"{time.time():.6f}"}],
    }
    if container.get("channel_id"):
        payload["channel"] = {"id": container["channel_id"], "name": "directmessage"}
    body = urlencode({"payload": json.dumps(payload)})
    answer = inbound.world.client.post(
        "/slack/events",
        content=body.encode(),
        headers=signed_headers(body, signing_secret=SIGNING_SECRET),
    )
    assert answer.status_code == 200, answer.text
    inbound.world.runtime.run_tasks_until_idle()  # the lazy part, replayed by the worker
    return trigger


def _choose(inbound: Inbound, card: m.Card, action: ActionId, choice: OverflowChoice) -> str:
    """Pick an option of a card message's menu (the ⋯ overflow or the Snooze select)."""
    kind = "overflow" if action == ActionId.CARD_MORE else "static_select"
    option = {"text": {"type": "plain_text", "text": choice.value}, "value": f"{choice}:{card.id}"}
    return _interact(
        inbound,
        {"type": kind, "action_id": action.value, "selected_option": option},
        container={
            "type": "message",
            "message_ts": card.slack_message_ts,
            "channel_id": card.slack_channel_id,
        },
    )


def _texts(blocks: list[dict[str, Any]]) -> str:
    """Every text of a message or view: sections, their fields, context elements."""
    found: list[str] = []
    for block in blocks:
        if isinstance(block.get("text"), dict):
            found.append(str(block["text"].get("text") or ""))
        found += [str(f.get("text") or "") for f in block.get("fields") or []]
        if block.get("type") == "context":
            found += [str(e.get("text") or "") for e in block.get("elements") or []]
    return "\n".join(found)


def _elements(message: Message) -> dict[str, dict[str, Any]]:
    return {
        str(element.get("action_id")): dict(element)
        for block in message.blocks or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
    }


def _view(served: ServedSlack, trigger: str) -> View:
    (view,) = [v for v in served.stand_in.views if v.trigger_id == trigger]
    return view


def test_a_reply_card_shows_who_wrote_their_history_the_step_the_reply_and_the_draft(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])

    (message,) = served.stand_in.messages(REP)
    text = _texts(message.blocks or [])
    payload = card.action_payload
    assert "*Reply* from *Dana Whitfield*" in text
    assert f"*From*\nDana Whitfield ({DANA})" in text
    assert "*Contact*\nLoan Officer, Pinnacle Lending" in text
    assert f"*Client*\n{HISTORY}" in text
    assert "*Answers*\nQ4 win-back · step 2" in text
    classified = f"*Classified*\n`{payload['category']}` · info request · positive · "
    assert classified in text
    assert f"{payload['confidence']:.0%} sure" in text
    assert "*Their reply*\n>Yes, send me your turn times" in text
    assert "*Our answer* · _Re: Turn times_" in text
    assert payload["body"].strip().splitlines()[0] in text
    assert "📝 Drafted from a template" in text
    for fact in payload["facts_used"]:
        assert fact in text
    elements = _elements(message)
    assert elements[ActionId.APPROVE]["text"]["text"] == "Send reply"
    assert elements[ActionId.APPROVE]["value"] == json.dumps(
        {"card": card.id, "fp": card.draft_fingerprint}, separators=(",", ":")
    )
    assert [o["value"] for o in elements[ActionId.CARD_SNOOZE]["options"]] == [
        f"snooze_1h:{card.id}",
        f"snooze_tomorrow:{card.id}",
        f"snooze_next_week:{card.id}",
    ]
    assert [o["value"] for o in elements[ActionId.CARD_MORE]["options"]] == [
        f"view_thread:{card.id}",
        f"open_contact:{card.id}",
        f"relabel:{card.id}",
    ]
    assert "waiting for you" in message.text


def test_an_amc_order_card_shows_the_order_number_address_fee_and_due_date_first(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    order = labelled(AMC_ORDER)
    card = _posted_card(inbound, order["body"], subject=order["subject"])

    assert card.type == "needs_human_response"
    (message,) = served.stand_in.messages(REP)
    blocks = message.blocks or []
    # Right under the headline: the order's facts, as fields, in this order.
    facts = [str(f["text"]) for f in blocks[1]["fields"]]
    entities = card.action_payload["entities"]
    labels = {
        "order_numbers": "Order",
        "property_addresses": "Property",
        "amounts": "Fee",
        "dates": "Due",
    }
    assert facts == [
        f"*{label}*\n" + "\n".join(entities[key])
        for key, label in labels.items()
        if key in entities
    ]
    assert facts[0] == "*Order*\nAO-482913"
    assert "*Fee*\n$525.00" in facts
    assert "*Classified*\n`AMC_ORDER`" in _texts(blocks)
    elements = _elements(message)
    assert elements[ActionId.APPROVE]["text"]["text"] == "Mark done"
    assert ActionId.EDIT not in elements


def test_snoozing_updates_the_message_and_the_sweep_posts_the_card_again_when_it_ends(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    clock = inbound.clock
    card = _posted_card(inbound, labelled(POSITIVE)["body"])
    first_ts = card.slack_message_ts

    _choose(inbound, card, ActionId.CARD_SNOOZE, OverflowChoice.SNOOZE_HOUR)

    snoozed = _card(inbound)
    assert snoozed.snoozed_until == clock.now() + timedelta(hours=1)
    assert snoozed.action_payload["snoozed_by"] == inbound.world.rep_id
    (message,) = served.stand_in.messages(REP)
    assert message.ts == first_ts
    text = _texts(message.blocks or [])
    unix = int((clock.now() + timedelta(hours=1)).timestamp())
    assert f"💤 Snoozed until <!date^{unix}^" in text
    assert f"by <@{REP}>" in text
    assert list(_elements(message)) == [ActionId.UNSNOOZE]
    runtime = inbound.world.runtime

    assert runtime.snooze_sweep.run_once() == 0  # not yet
    clock.advance(hours=1, seconds=1)
    assert runtime.snooze_sweep.run_once() == 1

    old, new = served.stand_in.messages(REP)
    assert old.ts == first_ts
    assert "Back from snooze" in _texts(old.blocks or [])
    assert _elements(old) == {}
    assert _elements(new)[ActionId.APPROVE]["text"]["text"] == "Send reply"
    back = _card(inbound)
    assert (back.snoozed_until, back.slack_message_ts, back.state) == (None, new.ts, "in_review")
    assert runtime.snooze_sweep.run_once() == 0
    assert len(served.stand_in.messages(REP)) == 2


def test_tomorrow_and_next_week_are_nine_in_the_morning_of_the_rep_s_time_zone(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, _ = world
    # The clock stands at Wednesday 2026-11-25 15:00 UTC: 9:00 in Chicago (UTC-6).
    card = _posted_card(inbound, labelled(POSITIVE)["body"])

    _choose(inbound, card, ActionId.CARD_SNOOZE, OverflowChoice.SNOOZE_TOMORROW)
    assert _card(inbound).snoozed_until == datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    _choose(inbound, card, ActionId.CARD_SNOOZE, OverflowChoice.SNOOZE_NEXT_WEEK)
    assert _card(inbound).snoozed_until == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def test_unsnooze_shows_the_card_again_in_its_message(world: tuple[Inbound, ServedSlack]) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])
    _choose(inbound, card, ActionId.CARD_SNOOZE, OverflowChoice.SNOOZE_HOUR)
    (message,) = served.stand_in.messages(REP)

    _interact(
        inbound,
        {
            "type": "button",
            "action_id": ActionId.UNSNOOZE.value,
            "value": _elements(message)[ActionId.UNSNOOZE]["value"],
        },
        container={"type": "message", "message_ts": message.ts, "channel_id": message.channel},
    )

    assert _card(inbound).snoozed_until is None
    (message,) = served.stand_in.messages(REP)
    assert ActionId.APPROVE in _elements(message)
    assert inbound.world.runtime.snooze_sweep.run_once() == 0


def test_a_decided_card_is_not_snoozed_and_the_rep_is_told_why(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])
    with inbound.sessions() as session:
        row = session.get(m.Card, card.id)
        assert row is not None
        row.state = "rejected"
        session.commit()

    _choose(inbound, card, ActionId.CARD_SNOOZE, OverflowChoice.SNOOZE_HOUR)

    assert _card(inbound).snoozed_until is None
    (told,) = served.stand_in.ephemerals(user=REP)
    assert told.text == (
        "⚠️ This card is already rejected; only a card waiting for you can be snoozed."
    )


def test_view_thread_opens_a_modal_with_our_email_and_their_reply_in_order(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])

    trigger = _choose(inbound, card, ActionId.CARD_MORE, OverflowChoice.VIEW_THREAD)

    (opened,) = served.stand_in.calls("views.open")
    assert opened.params["trigger_id"] == trigger
    view = _view(served, trigger)
    assert (view.title, view.callback_id, view.update_count) == ("Thread", "card_thread_modal", 1)
    contexts = [str(b["elements"][0]["text"]) for b in view.blocks if b.get("type") == "context"]
    sections = [str(b["text"]["text"]) for b in view.blocks if b.get("type") == "section"]
    assert [c.split(" · ")[0] for c in contexts] == ["*Us*", "*Them*"]
    assert contexts[0].startswith(f"*Us* · to {DANA}")
    assert "_the message this card answers_" in contexts[1]
    assert sections[0].startswith("Hi Dana,")  # the campaign email the test world sent
    assert sections[1] == card.action_payload["reply_text"].strip()
    assert len(view.blocks) <= 100


def test_open_contact_opens_a_modal_with_the_engagement_timeline_and_status(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])

    with inbound.sessions() as session:
        reply = session.get(m.InboundEmail, card.inbound_email_id)
        received = reply.received_at if reply else None
    assert received is not None
    # The stand-in's mail carries the real date: look at the contact after the reply came.
    inbound.clock.advance(seconds=(received - inbound.clock.now()).total_seconds() + 60)

    trigger = _choose(inbound, card, ActionId.CARD_MORE, OverflowChoice.OPEN_CONTACT)

    view = _view(served, trigger)
    assert (view.title, view.callback_id) == ("Contact", "card_contact_modal")
    text = _texts(view.blocks)
    assert f"*Dana Whitfield* · Loan Officer, Pinnacle Lending\n{DANA}" in text
    # The score and trend the REST API shows for the contact, at the same time.
    history = inbound.api(f"/api/contacts/{card.contact_id}/engagement-history")
    assert history["score"] > 0
    trend = {"rising": "↗ rising", "falling": "↘ falling", "steady": "→ steady"}
    assert f"*Engagement*\n{history['score']:.0f}/100 · {trend[history['trend']]}" in text
    assert "*Status*\n✅ Reachable" in text
    # Dana's reply stopped her enrollment (the campaign stops on a reply).
    assert "*Open enrollments*\nNone: no campaign will email them." in text
    assert "👍 Positive reply · _Re: Turn times_" in text
    assert "📤 Sent" in text


def test_a_menu_choice_for_a_card_that_is_gone_says_so_in_the_modal(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])
    gone = replace_id(card, card.id + 1000)

    trigger = _choose(inbound, gone, ActionId.CARD_MORE, OverflowChoice.OPEN_CONTACT)

    view = _view(served, trigger)
    assert _texts(view.blocks) == f"⚠️ card {card.id + 1000} not found"


def replace_id(card: m.Card, card_id: int) -> m.Card:
    """The card as another message's menu would name it."""
    return m.Card(
        id=card_id,
        slack_channel_id=card.slack_channel_id,
        slack_message_ts=card.slack_message_ts,
    )


def test_re_label_in_the_menu_opens_the_form_with_the_message_s_labels(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])

    trigger = _choose(inbound, card, ActionId.CARD_MORE, OverflowChoice.RELABEL)

    (opened,) = served.stand_in.calls("views.open")
    assert opened.params["trigger_id"] == trigger
    view = _view(served, trigger)
    assert view.callback_id == CallbackId.RELABEL_CARD
    assert served.stand_in.ephemerals(user=REP) == []


def test_the_app_home_lists_reply_cards_first_and_snoozed_cards_as_snoozed(
    world: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = world
    card = _posted_card(inbound, labelled(POSITIVE)["body"])
    with inbound.sessions() as session:
        outreach = m.Card(
            org_id=inbound.world.org_id,
            job_id=inbound.job_id,
            contact_id=inbound.world.contact_ids[DANA],
            type="send_email",
            state="in_review",
            priority="medium",
            title="Re-engage Ray",
            action_payload={"to": "ray@pinnacle.example.com", "subject": "Turn times"},
        )
        session.add(outreach)
        session.commit()
        outreach_id = outreach.id

    def home() -> list[str]:
        body = json.dumps(
            {
                "team_id": DEFAULT_TEAM_ID,
                "type": "event_callback",
                "event_id": f"Ev{time.time_ns()}",
                "event": {"type": "app_home_opened", "user": REP, "tab": "home"},
            }
        )
        headers = {**signed_headers(body, signing_secret=SIGNING_SECRET)}
        headers["content-type"] = "application/json"
        answer = inbound.world.client.post("/slack/events", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        inbound.world.runtime.run_tasks_until_idle()
        blocks = served.stand_in.home_view(REP).blocks
        return [
            str(e.get("value"))
            for b in blocks
            if b.get("type") == "actions"
            for e in b.get("elements") or []
            if e.get("action_id") in (ActionId.APPROVE, ActionId.UNSNOOZE)
        ]

    reply_first = home()
    assert [json.loads(v)["card"] for v in reply_first] == [card.id, outreach_id]

    _choose(inbound, card, ActionId.CARD_SNOOZE, OverflowChoice.SNOOZE_HOUR)
    snoozed_last = home()
    assert [json.loads(v)["card"] for v in snoozed_last] == [outreach_id, card.id]
    text = _texts(served.stand_in.home_view(REP).blocks)
    assert f"💤 ↩️ *{card.title}*\n💤 Snoozed until <!date^" in text
    assert json.loads(snoozed_last[1]) == {"card": card.id, "fp": card.draft_fingerprint}
