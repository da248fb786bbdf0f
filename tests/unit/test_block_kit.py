"""The Block Kit Salesbot sends, as exact JSON: cards in every state, the modals, the App
Home and the bulk "Approve all" message, each against its snapshot in tests/unit/snapshots/.

Run with UPDATE_SNAPSHOTS=1 to write a new snapshot or rewrite a changed one; read the diff
before committing it, as Slack will show it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.cards import Card, CardState, CardType, CardView, Priority
from domain.classification import Category
from domain.clock import FixedClock
from domain.reply_policy import ReplyPolicy
from domain.rules import Rule, RuleType
from handlers.slack.blocks import (
    bulk_message,
    campaign_help_message,
    card_message,
    edit_modal,
    full_body_modal,
    home_view,
    reject_modal,
    rules_message,
)
from handlers.slack.commands import CAMPAIGN_USAGE
from tests.support.snapshots import assert_matches_snapshot

CLOCK = FixedClock(datetime(2026, 12, 3, 15, 30, tzinfo=UTC))
REP = "U0MARIA01"

BODY = (
    "Hi Dana,\n\n"
    "Turn times on conventional appraisals in Travis County are back under six days, "
    "and we have two certified residential appraisers free for rush orders this month.\n\n"
    "If Pinnacle Lending has files waiting, reply here and I'll get them scheduled.\n\n"
    "Maria Lopez\nLone Star Appraisals"
)


def make_card(**overrides: Any) -> Card:
    """An email card of a campaign's first step, waiting for review."""
    created = CLOCK.now() - timedelta(hours=2)
    values: dict[str, Any] = {
        "id": 42,
        "org_id": 1,
        "type": CardType.SEND_EMAIL,
        "state": CardState.IN_REVIEW,
        "priority": Priority.MEDIUM,
        "title": "Re-engage Dana Whitfield",
        "created_at": created,
        "updated_at": created,
        "job_id": 7,
        "contact_id": 11,
        "rationale": "No orders in 127 days (1 order in the year before).",
        "action_payload": {
            "to": "dana@pinnaclelending.com",
            "subject": "Turn times in TX are down, Dana",
            "body": BODY,
            "campaign_name": "Q4 lender win-back",
            "step": 0,
        },
        "draft_fingerprint": "3f9a0c1d2e4b5a6978c0",
    }
    values.update(overrides)
    return Card(**values)


def make_view(card: Card, **overrides: Any) -> CardView:
    """What the card's message shows of its contact, campaign and step."""
    values: dict[str, Any] = {
        "contact_name": "Dana Whitfield",
        "contact_email": "dana@pinnaclelending.com",
        "contact_title": "Loan Officer",
        "company_name": "Pinnacle Lending",
        "campaign_name": "Q4 lender win-back",
        "job_name": "Q4 lender win-back",
        "step_number": 1,
        "total_steps": 3,
        "owner_slack_id": REP,
    }
    values.update(overrides)
    return CardView(card=card, **values)


def message(view: CardView) -> dict[str, Any]:
    text, blocks = card_message(view)
    return {"text": text, "blocks": blocks}


# What each state adds to the card, and who acted on it.
_BY_STATE: dict[CardState, tuple[dict[str, Any], str | None]] = {
    CardState.SUGGESTED: ({}, None),
    CardState.IN_REVIEW: ({}, None),
    CardState.APPROVED: ({"approved_by": 3, "approved_at": CLOCK.now()}, REP),
    CardState.EXECUTING: ({"approved_by": 3, "approved_at": CLOCK.now()}, REP),
    CardState.DONE: ({"approved_by": 3, "executed_at": CLOCK.now()}, REP),
    CardState.BLOCKED: (
        {"blocked_reason": "Gmail answered 403: the mailbox is not connected"},
        REP,
    ),
    CardState.REJECTED: ({"rejected_reason": "wrong contact"}, REP),
    CardState.WITHDRAWN: ({"withdrawn_reason": "job #7 was cancelled"}, REP),
}


@pytest.mark.parametrize("state", list(CardState))
def test_an_email_card_in_each_state_shows_its_status_or_its_buttons(state: CardState) -> None:
    changes, actor = _BY_STATE[state]
    card = make_card(state=state, updated_at=CLOCK.now(), **changes)
    assert_matches_snapshot(f"card_{state.value}", message(make_view(card, actor_slack_id=actor)))


def test_a_card_without_a_rationale_shows_no_why_line() -> None:
    card = make_card(rationale=None)
    assert_matches_snapshot("card_in_review_without_rationale", message(make_view(card)))


def test_a_task_card_without_a_contact_shows_its_description_and_mark_done() -> None:
    card = make_card(
        type=CardType.RESEARCH,
        title="Find the new AMC contact at Pinnacle Lending",
        description="Dana Whitfield left Pinnacle Lending; find who orders appraisals now.",
        rationale=None,
        contact_id=None,
        action_payload={"portal_urls": ["https://portal.example.com/pinnacle"]},
        draft_fingerprint=None,
    )
    view = make_view(card, contact_name=None, contact_email=None, step_number=None)
    assert_matches_snapshot("card_task_in_review", message(view))


def test_a_card_sending_queued_behind_the_daily_cap_says_so() -> None:
    card = make_card(
        state=CardState.EXECUTING,
        blocked_reason="the mailbox's daily cap is reached; it goes out tomorrow",
    )
    assert_matches_snapshot("card_executing_queued", message(make_view(card, actor_slack_id=REP)))


def test_an_edited_card_sent_in_a_thread_says_both() -> None:
    payload = {**make_card().action_payload, "edited_by": 3}
    card = make_card(state=CardState.DONE, executed_at=CLOCK.now(), action_payload=payload)
    view = make_view(card, actor_slack_id=REP, thread_emails=2)
    assert_matches_snapshot("card_done_edited_in_thread", message(view))


def test_a_long_draft_is_previewed_with_a_view_full_button_and_a_draft_note() -> None:
    payload = {
        **make_card().action_payload,
        "body": long_body(),
        "draft_note": "Claude was unavailable; this is the template as written.",
    }
    card = make_card(action_payload=payload)
    assert_matches_snapshot("card_long_draft", message(make_view(card)))


def long_body() -> str:
    """A draft of about 3,300 characters: two sections of the full-body modal."""
    paragraph = (
        "Our turn times on conventional, FHA and VA appraisals across the Austin metro "
        "are back under six business days, and desk reviews take two. "
    )
    return "\n\n".join(f"{n}. {paragraph * 2}" for n in range(1, 13))


def test_the_edit_modal_is_prefilled_with_the_draft() -> None:
    assert_matches_snapshot("modal_edit", edit_modal(make_card()))


def test_the_edit_modal_shows_an_error_above_the_fields() -> None:
    modal = edit_modal(make_card(), error="The subject must be one line.")
    assert_matches_snapshot("modal_edit_with_error", modal)


def test_the_reject_modal_asks_for_an_optional_reason() -> None:
    assert_matches_snapshot("modal_reject", reject_modal(make_card()))


def test_the_full_body_modal_splits_a_long_draft_into_sections() -> None:
    payload = {**make_card().action_payload, "body": long_body()}
    assert_matches_snapshot("modal_full_body", full_body_modal(make_card(action_payload=payload)))


def test_the_app_home_of_a_rep_without_gmail_or_cards_offers_to_connect() -> None:
    home = home_view(
        [],
        pending_total=0,
        gmail_email=None,
        connect_url="https://salesbot.example.com/api/integrations/gmail/connect?state=s1",
    )
    assert_matches_snapshot("home_empty_not_connected", home)


def test_the_app_home_lists_the_cards_waiting_and_how_many_more() -> None:
    waiting = make_card()
    blocked = make_card(
        id=43,
        title="Re-engage Ray Okafor",
        state=CardState.BLOCKED,
        blocked_reason="Gmail answered 403: the mailbox is not connected",
    )
    task = make_card(
        id=44,
        type=CardType.SCHEDULE_CALL,
        title="Call Ray Okafor about the new VA panel",
        action_payload={},
    )
    home = home_view(
        [make_view(card) for card in (waiting, blocked, task)],
        pending_total=17,
        gmail_email="maria@lonestarappraisals.com",
        connect_url=None,
    )
    assert_matches_snapshot("home_with_cards", home)


def batch_cards(count: int) -> list[Card]:
    """A batch of drafts to contacts 1…count."""
    return [
        replace(
            make_card(id=100 + n, title=f"Re-engage contact {n}"),
            action_payload={"subject": f"Turn times in TX are down, contact {n}"},
        )
        for n in range(1, count + 1)
    ]


def bulk(count: int) -> dict[str, Any]:
    value = json.dumps({"job": 7, "batch": 2}, separators=(",", ":"))
    text, blocks = bulk_message(
        job_name="Q4 lender win-back", batch=2, cards=batch_cards(count), value=value
    )
    return {"text": text, "blocks": blocks}


def test_the_bulk_message_lists_its_drafts_behind_a_confirmed_approve_all() -> None:
    assert_matches_snapshot("bulk_three_drafts", bulk(3))


def test_the_bulk_message_lists_forty_drafts_and_counts_the_rest() -> None:
    assert_matches_snapshot("bulk_forty_two_drafts", bulk(42))


def make_rule(
    rule_id: int, rule_type: RuleType, pattern: str, category: Category, **more: Any
) -> Rule:
    values: dict[str, Any] = {
        "id": rule_id,
        "org_id": 1,
        "rule_type": rule_type,
        "pattern": pattern,
        "category": category,
        "priority": 100,
        "is_active": True,
        "created_by": 3,
        "created_at": CLOCK.now(),
    }
    values.update(more)
    return Rule(**values)


def rules(found: list[Rule]) -> dict[str, Any]:
    text, blocks = rules_message(found)
    return {"text": text, "blocks": blocks}


def test_the_rules_list_shows_each_rule_in_the_order_tried_with_the_inactive_marked() -> None:
    found = [
        make_rule(4, RuleType.SENDER_EMAIL, "orders@pinnacle.com", Category.AMC_ORDER, priority=5),
        make_rule(2, RuleType.SENDER_DOMAIN, "pinnacle.com", Category.OPPORTUNITY, priority=10),
        make_rule(7, RuleType.SUBJECT_CONTAINS, "please remove me", Category.REMOVE),
        make_rule(9, RuleType.SUBJECT_REGEX, r"order #?\d{4,} <`rush`>", Category.AMC_ORDER),
        make_rule(3, RuleType.SUBJECT_CONTAINS, "lawsuit", Category.ESCALATE, is_active=False),
    ]
    assert_matches_snapshot("rules_list", rules(found))


def test_an_empty_rules_list_says_how_to_add_one() -> None:
    assert_matches_snapshot("rules_list_empty", rules([]))


def test_a_long_rules_list_stays_within_a_message_and_counts_the_rest() -> None:
    found = [
        make_rule(n, RuleType.SUBJECT_REGEX, f"({n:03d})" + "x" * 450, Category.STATUS)
        for n in range(1, 501)
    ]
    message = rules(found)
    sections = message["blocks"][1:-1]

    assert len(message["blocks"]) == 42
    assert all(len(b["text"]["text"]) <= 3000 for b in sections)
    shown = sum(b["text"]["text"].count("\n") + 1 for b in sections)
    assert shown == 40 * 11  # patterns are shown cut to 200 characters: 11 lines a section
    assert message["blocks"][-1]["elements"][0]["text"].startswith(
        f"… and {500 - shown} more: `GET /api/inbound/rules` lists them all."
    )


def test_campaign_help_shows_the_auto_reply_policy_after_the_usage() -> None:
    _, off = campaign_help_message(CAMPAIGN_USAGE, ReplyPolicy())
    _, on = campaign_help_message(CAMPAIGN_USAGE, ReplyPolicy(enabled=True, min_confidence=0.97))
    text, unconnected = campaign_help_message(CAMPAIGN_USAGE, None)

    assert_matches_snapshot("campaign_help_policy_off", {"blocks": off})
    assert_matches_snapshot("campaign_help_policy_on", {"blocks": on})
    assert (text, unconnected) == (
        CAMPAIGN_USAGE,
        [{"type": "section", "text": {"type": "mrkdwn", "text": CAMPAIGN_USAGE}}],
    )
