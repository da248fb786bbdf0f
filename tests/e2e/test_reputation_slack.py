"""Reputation end to end (docs/reputation.md): a negative review sent to the API becomes a
drafted response card in the account manager's Slack DM, approved by a signed click; an
escalated review lands in the account manager's DM; legal's in legal's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.contacts import UserRole
from handlers.slack.ids import ActionId, BlockId, CallbackId
from storage import models as m
from tests.support.accounts import ensure_user
from tests.support.slack import ServedSlack
from tests.support.slack_app import OTHER_REP, REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

R = "/api/reputation"


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock, contacts=0) as built:
        yield built


def auth(world: SlackWorld) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.api_token}"}


def set_up_people(world: SlackWorld) -> tuple[int, int]:
    """Maria (REP) is the account manager, Jose (OTHER_REP) is legal; both in Slack."""
    with world.session_factory() as session:
        manager = ensure_user(
            session, world.org_id, email="maria@lonestar.example.com", role=UserRole.REP
        )
        lawyer = ensure_user(session, world.org_id, email="jose@lonestar.example.com")
        for user_id, slack_id in ((manager, REP), (lawyer, OTHER_REP)):
            row = session.get(m.User, user_id)
            assert row is not None
            row.slack_user_id = slack_id
        session.commit()
    answer = world.client.put(
        f"{R}/settings",
        json={
            "account_manager_user_id": manager,
            "legal_user_id": lawyer,
            "firm_name": "Lone Star Appraisals",
        },
        headers=auth(world),
    )
    assert answer.status_code == 200, answer.text
    return manager, lawyer


def dm(world: SlackWorld, user: str) -> list[Any]:
    return world.slack.messages(world.slack.dm_channel_id(user))


def text_of(message: Any) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def review_row(world: SlackWorld, review_id: int) -> m.Review:
    with world.session_factory() as s:
        row = s.get(m.Review, review_id)
        assert row is not None
        return row


def test_a_negative_review_becomes_a_response_card_the_account_manager_approves(
    world: SlackWorld,
) -> None:
    manager, _ = set_up_people(world)
    sent = world.client.post(
        f"{R}/reviews",
        json={
            "platform": "yelp",
            "external_id": "y-77",
            "author": "Pat K.",
            "rating": 2,
            "text": "The appraisal took three weeks and nobody returned my calls.",
            "url": "https://www.yelp.com/biz/lone-star?review=77",
        },
        headers=auth(world),
    )
    assert sent.status_code == 201, sent.text
    review_id = sent.json()["review_ids"][0]
    assert world.run_worker() == 1  # the response card's post

    (card_message,) = dm(world, REP)
    shown = text_of(card_message)
    assert "★★☆☆☆" in shown
    assert "*Yelp* by Pat K." in shown
    assert "The appraisal took three weeks" in shown
    assert "Hi Pat K., thank you for telling us about your experience" in shown
    assert "— Lone Star Appraisals" in shown
    assert "post it on the review site yourself" in shown
    value = world.button(card_message, ActionId.REVIEW_APPROVE)["value"]

    clicked = world.click(ActionId.REVIEW_APPROVE, value, message_ts=card_message.ts)
    assert clicked.status_code == 200
    wait_until(lambda: review_row(world, review_id).status == "responded", what="responded")
    row = review_row(world, review_id)
    assert row.response_text is not None
    assert row.response_text.startswith("Hi Pat K., thank you for telling us")
    assert row.responded_by == manager
    updated = wait_until(
        lambda: "Response approved" in text_of(dm(world, REP)[0]) and text_of(dm(world, REP)[0]),
        what="card updated",
    )
    assert f"✅ Response approved by <@{REP}>" in updated
    assert ActionId.REVIEW_APPROVE.value not in updated  # the buttons are gone

    # A second click of the same message does nothing more.
    world.click(ActionId.REVIEW_APPROVE, value, message_ts=card_message.ts)
    wait_until(lambda: len(world.slack.ephemerals(user=REP)) == 1, what="refusal")
    assert review_row(world, review_id).responded_at == row.responded_at

    trends = world.client.get(f"{R}/trends", headers=auth(world)).json()["totals"]
    assert (trends["needing_response"], trends["responded"], trends["response_rate"]) == (1, 1, 1.0)


def test_an_edited_response_is_what_gets_recorded(world: SlackWorld) -> None:
    set_up_people(world)
    sent = world.client.post(
        f"{R}/reviews",
        json={"platform": "google", "external_id": "g-5", "rating": 1, "text": "Bad."},
        headers=auth(world),
    ).json()
    world.run_worker()
    (message,) = dm(world, REP)
    value = world.button(message, ActionId.REVIEW_EDIT)["value"]
    assert world.click(ActionId.REVIEW_EDIT, value, message_ts=message.ts).status_code == 200
    opened = wait_until(
        lambda: [v for v in world.slack.views if v.callback_id == CallbackId.EDIT_REVIEW_RESPONSE],
        what="edit modal",
    )
    metadata = opened[0].private_metadata
    submitted = world.submit(
        CallbackId.EDIT_REVIEW_RESPONSE,
        {
            BlockId.RESPONSE: {ActionId.RESPONSE_INPUT: {"value": "We are sorry. Call us."}},
            BlockId.OPTIONS: {
                ActionId.APPROVE_AFTER_EDIT: {"selected_options": [{"value": "approve"}]}
            },
        },
        private_metadata=metadata,
    )
    assert submitted.status_code == 200
    review_id = sent["review_ids"][0]
    wait_until(lambda: review_row(world, review_id).status == "responded", what="responded")
    assert review_row(world, review_id).response_text == "We are sorry. Call us."
    wait_until(
        lambda: "Response approved (edited)" in text_of(dm(world, REP)[0]), what="card updated"
    )


def test_an_escalated_review_lands_in_the_account_managers_dm_and_legal_in_legals(
    world: SlackWorld,
) -> None:
    set_up_people(world)
    for rule in (
        {"kind": "staff", "pattern": "Maria Lopez", "route_to": "account_manager"},
        {"kind": "legal", "pattern": "", "route_to": "legal"},
    ):
        made = world.client.post(f"{R}/escalation-rules", json=rule, headers=auth(world))
        assert made.status_code == 201, made.text
    sent = world.client.post(
        f"{R}/reviews",
        json={
            "reviews": [
                {
                    "platform": "zillow",
                    "external_id": "z-1",
                    "author": "Sam",
                    "rating": 4,
                    "text": "Maria Lopez was helpful but the report had a typo.",
                },
                {
                    "platform": "trustpilot",
                    "external_id": "t-1",
                    "author": "Lee",
                    "rating": 1,
                    "text": "This is fraud. My lawyer will hear about it.",
                },
            ]
        },
        headers=auth(world),
    ).json()
    assert (sent["escalations"], sent["response_cards"]) == (2, 1)
    world.run_worker()

    # The account manager gets the staff escalation and the 1-star review's response card.
    manager_messages = dm(world, REP)
    assert len(manager_messages) == 2
    (manager_card,) = [msg for msg in manager_messages if "🚨" in text_of(msg)]
    shown = text_of(manager_card)
    assert "🚨" in shown
    assert "Escalated to the account manager" in shown
    assert "names staff member 'Maria Lopez'" in shown
    assert "Maria Lopez was helpful" in shown
    value = world.button(manager_card, ActionId.APPROVE)["value"]

    legal_messages = dm(world, OTHER_REP)
    assert len(legal_messages) == 1
    assert "Escalated to legal" in text_of(legal_messages[0])
    # The 1-star review's response is drafted for legal's scenario.
    with world.session_factory() as s:
        scenarios = list(
            s.scalars(select(m.Card.action_payload).where(m.Card.type == "review_response"))
        )
    assert [p["scenario"] for p in scenarios] == ["legal"]

    assert world.click(ActionId.APPROVE, value, message_ts=manager_card.ts).status_code == 200
    wait_until(
        lambda: any(f"✅ Handled by <@{REP}>" in text_of(msg) for msg in dm(world, REP)),
        what="escalation handled",
    )
