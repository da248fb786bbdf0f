"""Reps re-label inbound mail (issue 12, "Learning from reps"), end to end: a reply delivered
to the rep's Gmail stand-in and run through the pipeline, then re-labelled by a signed
view submission (the card's Re-label modal) or the REST API; the opt-out follows the labels,
the correction is stored, the card and the rep are told; three identical corrections propose
a rule to the admin in a Slack DM, and a signed Accept makes the rule that files the next
message from that sender.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.cards import CardState, CardType, Priority
from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.errors import InvalidInput
from handlers.slack.common import SlackDeps
from handlers.slack.ids import ActionId, BlockId, CallbackId
from handlers.slack.relabel import open_relabel_modal
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID, SlackStandIn
from storage import models as m
from tests.e2e.test_inbound_understanding import POSITIVE, REMOVE, Inbound, inbound_world, labelled
from tests.support.accounts import ensure_user, link_slack_team
from tests.support.gmail_app import DANA, REP_EMAIL
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import REP, SIGNING_SECRET

pytestmark = pytest.mark.slow

ADMIN = "U0ANA0001"
ADMIN_EMAIL = "ana@lonestar.example.com"


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
    served_slack: ServedSlack,
) -> Iterator[tuple[Inbound, SlackStandIn]]:
    """The inbound world with the Slack stand-in wired, an admin with a Slack account."""
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    slack.add_user(ADMIN, "ana", ADMIN_EMAIL, real_name="Ana Admin")
    settings: dict[str, object] = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }
    with inbound_world(engine, session_factory, clock, google, settings=settings) as built:
        with session_factory() as session:
            link_slack_team(session, built.world.org_id, DEFAULT_TEAM_ID)
            admin_id = ensure_user(
                session, built.world.org_id, email=ADMIN_EMAIL, role=UserRole.ADMIN
            )
            admin = session.get(m.User, admin_id)
            assert admin is not None
            admin.slack_user_id = ADMIN
            job = session.get(m.Job, built.job_id)
            assert job is not None
            job.params = {
                "target": {"contact_ids": [built.world.contact_ids[DANA]]},
                "templates": [{"subject": "Turn times", "body": "Hi {{ first_name }}"}],
            }
            session.commit()
        yield built, slack


def _signed(inbound: Inbound, payload: dict[str, Any]) -> Any:
    body = urlencode({"payload": json.dumps(payload)})
    answer = inbound.world.client.post(
        "/slack/events",
        content=body.encode(),
        headers=signed_headers(body, signing_secret=SIGNING_SECRET),
    )
    assert answer.status_code == 200, answer.text
    return answer


def _submit_relabel(
    inbound: Inbound, card_id: int, email_id: int, *, category: str, intent: str, sentiment: str
) -> Any:
    def picked(block: BlockId, action: ActionId, value: str) -> dict[str, Any]:
        return {
            block.value: {
                action.value: {
                    "type": "static_select",
                    "selected_option": {
                        "text": {"type": "plain_text", "text": value},
                        "value": value,
                    },
                }
            }
        }

    values = {
        **picked(BlockId.CATEGORY, ActionId.CATEGORY_INPUT, category),
        **picked(BlockId.INTENT, ActionId.INTENT_INPUT, intent),
        **picked(BlockId.SENTIMENT, ActionId.SENTIMENT_INPUT, sentiment),
    }
    return _signed(
        inbound,
        {
            "type": "view_submission",
            "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox-appraisals"},
            "user": {"id": REP, "username": "maria", "team_id": DEFAULT_TEAM_ID},
            "api_app_id": "A0SANDBOXAPP",
            "token": "deprecated",
            "trigger_id": "1.2.3",
            "view": {
                "id": "V0RELABEL",
                "type": "modal",
                "callback_id": CallbackId.RELABEL_CARD.value,
                "private_metadata": json.dumps({"card": card_id, "email": email_id}),
                "state": {"values": values},
                "hash": "1",
            },
        },
    )


def _click(
    inbound: Inbound, action_id: str, value: str, *, user: str, channel: str, ts: str
) -> None:
    _signed(
        inbound,
        {
            "type": "block_actions",
            "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox-appraisals"},
            "user": {"id": user, "username": user.lower(), "team_id": DEFAULT_TEAM_ID},
            "api_app_id": "A0SANDBOXAPP",
            "token": "deprecated",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "channel": {"id": channel, "name": "directmessage"},
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "rule_proposal",
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        },
    )


def _card_for_a_person(inbound: Inbound, row: m.InboundEmail) -> m.Card:
    """A removal request makes no card while the org's auto-reply policy is off: the card a
    person gets for it here, posted to the rep's DM by the app's own poster."""
    with inbound.sessions() as session:
        card = m.Card(
            org_id=row.org_id,
            job_id=inbound.job_id,
            contact_id=row.contact_id,
            client_id=row.client_id,
            inbound_email_id=row.id,
            type=CardType.NEEDS_HUMAN_RESPONSE.value,
            state=CardState.IN_REVIEW.value,
            priority=Priority.MEDIUM.value,
            title=f"Needs a person: {row.from_email}: {row.subject}",
            action_payload={
                "from_email": row.from_email,
                "subject": row.subject,
                "category": row.category,
                "intent": row.intent,
                "sentiment": row.sentiment,
            },
        )
        session.add(card)
        session.commit()
        card_id = card.id
    runtime = inbound.world.runtime
    assert runtime.outreach.presenting.show_card(row.org_id, card_id, post=True) is None
    return _card(inbound, card_id)


def _card(inbound: Inbound, card_id: int) -> m.Card:
    with inbound.sessions() as session:
        card = session.get(m.Card, card_id)
        assert card is not None
        return card


def _corrections(inbound: Inbound) -> list[m.ClassifierCorrection]:
    with inbound.sessions() as session:
        return list(
            session.scalars(select(m.ClassifierCorrection).order_by(m.ClassifierCorrection.id))
        )


def _relabel(inbound: Inbound, email_id: int, **labels: str) -> Any:
    answer = inbound.world.client.post(
        f"/api/inbound/{email_id}/labels", json=labels, headers=inbound.world.auth()
    )
    return answer


def test_a_re_label_that_undoes_an_opt_out(world: tuple[Inbound, SlackStandIn]) -> None:
    inbound, slack = world
    row = inbound.deliver(inbound.reply(labelled(REMOVE)["body"]))
    assert (row.category, row.intent) == ("REMOVE", "unsubscribe")
    assert inbound.contact(DANA).opted_out_at is not None
    assert [e[0] for e in inbound.engagement(DANA)] == ["opted_out"]
    card = _card_for_a_person(inbound, row)
    assert card.slack_message_ts is not None
    updates_before = len(slack.calls("chat.update"))

    _submit_relabel(
        inbound, card.id, row.id, category="INFORMATION", intent="none", sentiment="neutral"
    )
    inbound.world.runtime.run_tasks_until_idle()

    assert inbound.contact(DANA).opted_out_at is None
    assert inbound.engagement(DANA) == [("replied", row.id, inbound.send_id)]
    (correction,) = _corrections(inbound)
    assert (correction.inbound_email_id, correction.card_id, correction.user_id) == (
        row.id,
        card.id,
        inbound.world.rep_id,
    )
    assert (correction.before["category"], correction.after["category"]) == (
        "REMOVE",
        "INFORMATION",
    )
    assert correction.sender_email == DANA
    message = inbound.email(row.gmail_message_id)
    assert (message.category, message.intent, message.classified_by) == (
        "INFORMATION",
        "none",
        "rep",
    )
    assert message.actions[-1]["action"] == "opt_out_undone"
    relabelled = _card(inbound, card.id)
    payload = relabelled.action_payload
    assert payload["relabel_note"].startswith("opt-out undone: dana@pinnacle.example.com")
    assert payload["relabelled"]["before"]["category"] == "REMOVE"
    assert payload["relabelled"]["after"]["category"] == "INFORMATION"
    assert payload["relabelled"]["by"] == inbound.world.rep_id
    assert payload["category"] == "INFORMATION"
    # The card's message was shown again, and the rep was told what changed.
    updated = slack.calls("chat.update")[updates_before:]
    assert [c.params["ts"] for c in updated] == [card.slack_message_ts]
    told = [m.text for m in slack.messages(REP) if m.ts != card.slack_message_ts]
    assert len(told) == 1
    assert "opt-out undone" in told[0]

    # Re-labelled to REMOVE again, from the card: opted out again.
    _submit_relabel(
        inbound, card.id, row.id, category="REMOVE", intent="unsubscribe", sentiment="neutral"
    )
    inbound.world.runtime.run_tasks_until_idle()

    assert inbound.contact(DANA).opted_out_at is not None
    assert [e[0] for e in inbound.engagement(DANA)] == ["opted_out"]
    assert len(_corrections(inbound)) == 2


def test_a_re_label_to_remove_opts_the_sender_out_and_bad_labels_are_refused(
    world: tuple[Inbound, SlackStandIn],
) -> None:
    inbound, _ = world
    row = inbound.deliver(inbound.reply(labelled(POSITIVE)["body"]))
    assert row.category != "REMOVE"
    assert inbound.contact(DANA).opted_out_at is None
    (event,) = inbound.engagement(DANA)
    assert event[0] == "positive_reply"

    refused = _relabel(inbound, row.id, category="SPAM")
    assert refused.status_code == 422, refused.text
    assert "AMC_ORDER" in refused.text
    assert "ESCALATE" in refused.text
    assert _corrections(inbound) == []

    negative = _relabel(inbound, row.id, sentiment="negative").json()
    assert negative["effects"][1:] == [
        "engagement: positive reply → negative reply",
        "the conversation's reply sentiment is now negative",
    ]
    assert inbound.send().reply_sentiment == "negative"
    assert [e[0] for e in inbound.engagement(DANA)] == ["negative_reply"]

    answer = _relabel(inbound, row.id, category="REMOVE", intent="unsubscribe")

    assert answer.status_code == 200, answer.text
    outcome = answer.json()
    assert outcome["changed"] is True
    assert outcome["after"]["category"] == "REMOVE"
    assert any(e.startswith("opted out dana@pinnacle.example.com") for e in outcome["effects"])
    assert inbound.contact(DANA).opted_out_at is not None
    assert inbound.engagement(DANA) == [("opted_out", row.id, None)]
    # The same labels again: nothing to do, and it says so.
    again = _relabel(inbound, row.id, category="REMOVE").json()
    assert again["changed"] is False
    assert again["effects"][0].startswith("nothing changed")
    listed = inbound.world.client.get("/api/inbound/corrections", headers=inbound.world.auth())
    assert [c["inbound_email_id"] for c in listed.json()] == [row.id, row.id]


def test_a_modal_with_a_value_outside_the_lists_is_refused_and_nothing_is_stored(
    world: tuple[Inbound, SlackStandIn],
) -> None:
    inbound, _ = world
    row = inbound.deliver(inbound.reply(labelled(POSITIVE)["body"]))
    with inbound.sessions() as session:
        card_id = session.scalars(select(m.Card.id).where(m.Card.inbound_email_id == row.id)).one()

    answer = _submit_relabel(
        inbound, card_id, row.id, category="SPAM", intent="none", sentiment="neutral"
    )
    inbound.world.runtime.run_tasks_until_idle()

    assert answer.json()["response_action"] == "errors"
    assert "SPAM" in answer.json()["errors"][BlockId.CATEGORY.value]
    assert _corrections(inbound) == []


def test_three_identical_corrections_propose_a_rule_the_admin_accepts_in_slack(
    world: tuple[Inbound, SlackStandIn],
) -> None:
    inbound, slack = world
    bodies = [
        "Thanks, we will keep your turn times on file.",
        "Noted, thank you for the update on the county.",
        "Thanks for letting us know about the new coverage area.",
    ]
    outcomes = []
    for body in bodies:
        row = inbound.deliver(inbound.reply(body))
        if row.category == "INFORMATION":  # already so: make it another category first
            assert _relabel(inbound, row.id, category="STATUS").status_code == 200
        answer = _relabel(inbound, row.id, category="INFORMATION")
        assert answer.status_code == 200, answer.text
        outcomes.append(answer.json())
    assert [o["proposal_id"] is not None for o in outcomes] == [False, False, True]
    assert any("rule proposed" in e for e in outcomes[-1]["effects"])
    proposals = inbound.world.client.get(
        "/api/inbound/rule-proposals", headers=inbound.world.auth()
    ).json()
    assert [(p["rule_type"], p["pattern"], p["category"], p["status"]) for p in proposals] == [
        ("sender_email", DANA, "INFORMATION", "open")
    ]

    inbound.world.runtime.run_tasks_until_idle()
    (dm,) = slack.messages(ADMIN)
    accept = next(
        element
        for block in dm.blocks or []
        for element in block.get("elements", []) or []
        if element.get("action_id") == ActionId.ACCEPT_RULE_PROPOSAL
    )
    # A rep's click is refused: only admins decide rules.
    _click(
        inbound,
        ActionId.ACCEPT_RULE_PROPOSAL,
        accept["value"],
        user=REP,
        channel=dm.channel,
        ts=dm.ts,
    )
    inbound.world.runtime.run_tasks_until_idle()
    with inbound.sessions() as session:
        assert session.scalars(select(m.ClassifierRule)).all() == []
    # The admin's Accept, clicked twice: one rule.
    for _ in range(2):
        _click(
            inbound,
            ActionId.ACCEPT_RULE_PROPOSAL,
            accept["value"],
            user=ADMIN,
            channel=dm.channel,
            ts=dm.ts,
        )
        inbound.world.runtime.run_tasks_until_idle()

    with inbound.sessions() as session:
        rules = session.scalars(select(m.ClassifierRule)).all()
        proposal = session.scalars(select(m.RuleProposal)).one()
    assert [(r.rule_type, r.pattern, r.category) for r in rules] == [
        ("sender_email", DANA, "INFORMATION")
    ]
    assert (proposal.status, proposal.rule_id) == ("accepted", rules[0].id)
    (updated,) = slack.messages(ADMIN)
    assert updated.text.startswith("✅ Accepted by <@U0ANA0001>")
    assert not any(b.get("type") == "actions" for b in updated.blocks or [])

    nxt = inbound.deliver(inbound.reply("Please send the invoice for the Barton file."))
    assert (nxt.category, nxt.classified_by) == ("INFORMATION", "rule")


def test_the_relabel_modal_opens_in_slack_with_the_message_s_labels(
    world: tuple[Inbound, SlackStandIn], served_slack: ServedSlack
) -> None:
    inbound, slack = world
    row = inbound.deliver(inbound.reply(labelled(POSITIVE)["body"]))
    with inbound.sessions() as session:
        card_id = session.scalars(select(m.Card.id).where(m.Card.inbound_email_id == row.id)).one()
    runtime = inbound.world.runtime
    deps = SlackDeps(
        outreach=runtime.outreach,
        accounts=runtime.services.accounts,
        rules=runtime.rules,
        session_factory=runtime.services.session_factory,
        clock=runtime.services.clock,
        wake_worker=lambda: None,
        gmail_connect_url=lambda actor: None,
        gmail_address=lambda actor: None,
        reply_policies=runtime.reply_policies,
        corrections=runtime.corrections,
    )
    client = served_slack.client()

    open_relabel_modal(deps, client, slack.issue_trigger_id(user_id=REP), row.org_id, card_id)

    (view,) = slack.views
    assert view.callback_id == CallbackId.RELABEL_CARD
    assert json.loads(view.private_metadata) == {"card": card_id, "email": row.id}
    initial = {
        b["block_id"]: b["element"]["initial_option"]["value"]
        for b in view.definition["blocks"]
        if b["type"] == "input"
    }
    assert initial == {"category": row.category, "intent": row.intent, "sentiment": row.sentiment}
    stale = slack.issue_trigger_id(user_id=REP)
    slack.expire_trigger_id(stale)
    with pytest.raises(InvalidInput, match="Slack took too long to open the form"):
        open_relabel_modal(deps, client, stale, row.org_id, card_id)
