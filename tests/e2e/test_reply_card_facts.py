"""What linking and the order book tell a reply card, end to end through the pipeline
(Claude is the Anthropic stand-in, through the real SDK):

- an interested reply from a client that had gone quiet re-engages it and makes a deal card;
- a status request about an order the organization does not have makes a look-up task,
  never auto-sent even with the auto-reply policy on;
- while Claude is down, an AMC order classified offline gets its card for a person at once,
  and Claude's later answer makes no second card.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from sandbox.anthropic_api import AnthropicStandIn, ErrorReply, start_anthropic_stand_in
from storage import models as m
from tests.e2e.test_inbound_understanding import AMC_ORDER, Inbound, inbound_world, labelled
from tests.support.gmail_app import DANA
from tests.support.google import GoogleServer

pytestmark = pytest.mark.slow
KEY = "sk-ant-api03-card-facts-e2e-3Hk9"


def said(category: str, intent: str, *, orders: list[str] | None = None) -> dict[str, Any]:
    return {
        "category": category,
        "confidence": 0.99,
        "sentiment": "positive",
        "sentiment_score": 0.8,
        "intent": intent,
        "entities": {
            "order_numbers": orders or [],
            "property_addresses": [],
            "amounts": [],
            "dates": [],
            "urgency": None,
        },
        "instructs_model": False,
    }


@pytest.fixture(scope="module")
def claude() -> Iterator[tuple[AnthropicStandIn, str]]:
    stand_in, server = start_anthropic_stand_in(api_keys=[KEY])
    try:
        yield stand_in, server.url
    finally:
        server.stop()


@pytest.fixture
def inbound(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
    claude: tuple[AnthropicStandIn, str],
) -> Iterator[Inbound]:
    stand_in, url = claude
    stand_in.reset()
    settings = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}
    with inbound_world(engine, session_factory, clock, google, settings=settings) as built:
        yield built


def _cards(inbound: Inbound) -> list[m.Card]:
    with inbound.sessions() as session:
        return list(session.scalars(select(m.Card).order_by(m.Card.id)))


def _client(inbound: Inbound) -> m.Client:
    with inbound.sessions() as session:
        contact = session.get(m.Contact, inbound.world.contact_ids[DANA])
        assert contact is not None
        assert contact.client_id is not None
        client = session.get(m.Client, contact.client_id)
        assert client is not None
        return client


def test_an_interested_reply_from_a_stale_client_re_engages_it_and_makes_a_deal_card(
    inbound: Inbound, claude: tuple[AnthropicStandIn, str]
) -> None:
    client = _client(inbound)
    with inbound.sessions() as session:
        row = session.get(m.Client, client.id)
        assert row is not None
        row.last_ordered_at = inbound.clock.now() - timedelta(days=200)
        row.re_engaged_at = None
        session.commit()
    claude[0].when("send over your fee schedule", said("OPPORTUNITY", "interested"))

    inbound.deliver(inbound.reply("We'd love to work with you again, send over your fee schedule."))
    inbound.world.runtime.run_tasks_until_idle()

    assert _client(inbound).re_engaged_at is not None
    (card,) = _cards(inbound)
    assert (card.type, card.state, card.action_payload["reply_action"]) == (
        "create_deal",
        "in_review",
        "open_deal",
    )


def test_a_status_request_about_an_unknown_order_makes_a_look_up_task_never_auto_sent(
    inbound: Inbound, claude: tuple[AnthropicStandIn, str]
) -> None:
    inbound.world.runtime.reply_policies.set_policy(
        None, inbound.world.org_id, enabled=True, categories=["STATUS"], min_confidence=0.95
    )
    claude[0].when("order AO-777001", said("STATUS", "info_request", orders=["AO-777001"]))
    before = len(inbound.world.sent())

    inbound.deliver(inbound.reply("Any update on order AO-777001? The borrower is asking."))
    inbound.world.runtime.run_tasks_until_idle()
    inbound.world.drain()

    (card,) = _cards(inbound)
    assert (card.type, card.state, card.action_payload["reply_action"]) == (
        "create_task",
        "in_review",
        "look_up_order",
    )
    assert card.action_payload["auto_reason"] == (
        "needs a person because the order asked about was not found"
    )
    assert len(inbound.world.sent()) == before


def test_while_claude_is_down_an_amc_order_gets_its_card_at_once_and_only_one(
    inbound: Inbound, claude: tuple[AnthropicStandIn, str]
) -> None:
    stand_in = claude[0]
    stand_in.answer_all_with(ErrorReply.overloaded())
    order = labelled(AMC_ORDER)
    row = inbound.deliver(inbound.reply(order["body"], subject=order["subject"]))

    assert (row.classified_by, row.category) == ("offline", "AMC_ORDER")
    assert row.reclassify_at is not None
    (card,) = _cards(inbound)
    assert (card.type, card.state, card.inbound_email_id) == (
        "needs_human_response",
        "in_review",
        row.id,
    )

    stand_in.answer_all_with(None)
    stand_in.when("AO-482913", said("AMC_ORDER", "none", orders=["AO-482913"]))
    inbound.clock.advance(minutes=5)
    inbound.world.runtime.inbound_worker.run_until_idle()

    assert inbound.email(row.gmail_message_id).classified_by == "claude"
    assert [c.id for c in _cards(inbound)] == [card.id]


def test_while_claude_is_down_an_ordinary_reply_waits_for_claude_for_its_card(
    inbound: Inbound, claude: tuple[AnthropicStandIn, str]
) -> None:
    stand_in = claude[0]
    stand_in.answer_all_with(ErrorReply.overloaded())
    row = inbound.deliver(inbound.reply("Yes, send me your turn times and fee schedule."))

    assert (row.classified_by, row.reclassify_at is not None) == ("offline", True)
    assert _cards(inbound) == []
