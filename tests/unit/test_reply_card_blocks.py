"""The Block Kit of cards made from an inbound message, as exact JSON (snapshots in
tests/unit/snapshots/), and the limits and escaping that hold whatever the email says:
a 100 kB reply stays within Slack's 50 blocks and 3,000 characters a section, and
`<!channel>`, `@here` or `<@U…>` in a message never ping anyone.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.card_details import CardThread, ContactOverview, OpenEnrollment, ThreadMessage
from domain.cards import Card, CardState, CardType, CardView, Priority
from domain.contacts import EngagementTrend
from domain.engagement import EngagementEntry, EngagementEvent, EngagementHistory, InboundRef
from domain.engagement import SendRef as EngagementSendRef
from handlers.slack.blocks import (
    card_message,
    contact_modal,
    home_view,
    parse_menu_value,
    referral_offer,
    safe,
    thread_modal,
)
from handlers.slack.ids import ActionId, OverflowChoice
from tests.support.snapshots import assert_matches_snapshot

NOW = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
REP = "U0MARIA01"

REPLY = (
    "Can you send your fee schedule for Hays County? We have two files next week.\n\nThanks,\nDana"
)
DRAFT = (
    "Hi Dana,\n\nHappy to. Our fee for a conventional 1004 in Hays County is on the "
    "schedule attached to our last email, and we can take both files next week.\n\nMaria"
)


def reply_payload(**overrides: Any) -> dict[str, Any]:
    """What a reply card's action_payload holds once drafted (docs/reply-cards.md)."""
    payload: dict[str, Any] = {
        "from_email": "dana@pinnaclelending.com",
        "from_name": "Dana Whitfield",
        "subject": "Re: Turn times in TX are down, Dana",
        "reply_text": REPLY,
        "reply_text_truncated": False,
        "category": "OPPORTUNITY",
        "intent": "info_request",
        "sentiment": "positive",
        "confidence": 0.93,
        "entities": {},
        "injection_attempt": False,
        "reason": "a question: a drafted answer",
        "reply_action": "draft_reply",
        "email_send_id": 88,
        "campaign_id": 5,
        "gmail_thread_id": "thread-88",
        "campaign_name": "Q4 lender win-back",
        "step": 1,
        "client_history": "ordered 43 times, last order 161 days ago",
        "to": "dana@pinnaclelending.com",
        "to_name": "Dana Whitfield",
        "body": DRAFT,
        "draft_source": "claude",
        "draft_note": None,
        "facts_used": [
            "Pinnacle Lending ordered 43 times; the last order was 161 days ago.",
            "The campaign's first email offered turn times under six days.",
        ],
    }
    payload.update(overrides)
    return payload


def reply_card(**overrides: Any) -> Card:
    """A drafted reply card waiting for the rep."""
    values: dict[str, Any] = {
        "id": 42,
        "org_id": 1,
        "type": CardType.REPLY_TO_EMAIL,
        "state": CardState.IN_REVIEW,
        "priority": Priority.HIGH,
        "title": "Reply: Dana Whitfield: Re: Turn times in TX are down, Dana",
        "created_at": NOW - timedelta(minutes=5),
        "updated_at": NOW - timedelta(minutes=5),
        "job_id": 7,
        "contact_id": 11,
        "client_id": 100,
        "inbound_email_id": 501,
        "description": REPLY,
        "rationale": "a question: a drafted answer",
        "action_payload": reply_payload(),
        "draft_fingerprint": "3f9a0c1d2e4b5a6978c0",
    }
    values.update(overrides)
    return Card(**values)


def view_of(card: Card, **overrides: Any) -> CardView:
    values: dict[str, Any] = {
        "contact_name": "Dana Whitfield",
        "contact_email": "dana@pinnaclelending.com",
        "contact_title": "Loan Officer",
        "company_name": "Pinnacle Lending",
        "campaign_name": "Q4 lender win-back",
        "owner_slack_id": REP,
    }
    values.update(overrides)
    return CardView(card=card, **values)


def message(view: CardView) -> dict[str, Any]:
    text, blocks = card_message(view)
    return {"text": text, "blocks": blocks}


def within_slack_limits(payload: dict[str, Any]) -> None:
    """The Block Kit rules a card message must keep (or Slack refuses it)."""
    blocks = payload["blocks"]
    assert len(blocks) <= 50
    assert len(payload["text"]) <= 3000
    for block in blocks:
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        if block["type"] == "context":
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
        if block["type"] == "actions":
            for element in block["elements"]:
                if element["type"] == "overflow":
                    assert 2 <= len(element["options"]) <= 5
                if "text" in element:
                    assert len(element["text"]["text"]) <= 75
                for option in element.get("options", []):
                    assert len(option["value"]) <= 150
                    assert len(option["text"]["text"]) <= 75


def test_a_reply_card_shows_the_sender_history_step_reply_classification_and_draft() -> None:
    payload = message(view_of(reply_card()))
    within_slack_limits(payload)
    assert_matches_snapshot("reply_card_in_review", payload)


def test_a_template_draft_says_so_with_its_note_and_the_facts_it_used() -> None:
    card = reply_card(
        action_payload=reply_payload(
            draft_source="template",
            draft_note="Claude was unavailable (timeout)",
        )
    )
    text = json.dumps(message(view_of(card)), ensure_ascii=False)
    assert "📝 Drafted from a template: Claude was unavailable (timeout)" in text
    assert "*Facts used*\\n• Pinnacle Lending ordered 43 times" in text


def test_an_amc_order_card_shows_its_order_number_address_fee_and_due_date_first() -> None:
    card = reply_card(
        type=CardType.NEEDS_HUMAN_RESPONSE,
        title="Needs a person: orders@clearpath.example.com: New Appraisal Order #AO-482913",
        draft_fingerprint=None,
        rationale="AMC order: a person handles orders",
        action_payload=reply_payload(
            from_email="orders@clearpath.example.com",
            from_name="Clearpath Order Desk",
            subject="New Appraisal Order #AO-482913",
            reply_text="Order #: AO-482913\nProperty: 1427 Maple Crest Dr\nFee: $525.00",
            category="AMC_ORDER",
            intent="none",
            sentiment="neutral",
            confidence=0.98,
            entities={
                "order_numbers": ["AO-482913"],
                "property_addresses": ["1427 Maple Crest Dr, Naperville, IL 60540"],
                "amounts": ["$525.00"],
                "dates": ["10/18/2024"],
                "urgency": "rush",
            },
            reply_action="human_response",
            body=None,
            to=None,
            facts_used=None,
            draft_source=None,
        ),
    )
    payload = message(view_of(card))
    within_slack_limits(payload)
    assert [f["text"] for f in payload["blocks"][1]["fields"]] == [
        "*Order*\nAO-482913",
        "*Property*\n1427 Maple Crest Dr, Naperville, IL 60540",
        "*Fee*\n$525.00",
        "*Due*\n10/18/2024",
        "*Urgency*\nrush",
    ]
    assert_matches_snapshot("reply_card_amc_order", payload)


def test_a_flagged_message_warns_right_under_the_headline() -> None:
    card = reply_card(
        type=CardType.NEEDS_HUMAN_RESPONSE,
        action_payload=reply_payload(injection_attempt=True, body=None),
    )
    blocks = message(view_of(card))["blocks"]
    assert blocks[1]["text"]["text"].startswith(
        "⚠️ *This message tried to give instructions to an AI.*"
    )


def test_a_meeting_request_shows_the_times_proposed() -> None:
    card = reply_card(
        type=CardType.SCHEDULE_CALL,
        action_payload=reply_payload(
            intent="meeting_request",
            proposed_times=[
                {
                    "start": "2026-12-08T15:00:00+00:00",
                    "end": "2026-12-08T15:30:00+00:00",
                    "words": "Tuesday at 9",
                },
                {"start": None, "end": None, "words": "any morning next week"},
            ],
        ),
    )
    payload = message(view_of(card))
    within_slack_limits(payload)
    assert_matches_snapshot("reply_card_meeting_request", payload)


def referral(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "email": "sam@pinnaclelending.com",
        "name": "Sam Ortiz",
        "role": "processor",
        "contact_id": 12,
        "campaign_id": 5,
        "campaign_name": "Q4 lender win-back",
        "enrolled_job_id": None,
        "words": "Sam handles our appraisals now",
    }
    values.update(overrides)
    return values


def test_a_referral_offers_to_enroll_the_person_named() -> None:
    card = reply_card(
        type=CardType.CREATE_TASK,
        action_payload=reply_payload(intent="referral", body=None, referral=referral()),
    )
    payload = message(view_of(card))
    within_slack_limits(payload)
    assert_matches_snapshot("reply_card_referral", payload)
    (enroll,) = [
        e
        for b in payload["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("action_id") == ActionId.ENROLL_REFERRAL
    ]
    assert enroll["text"]["text"] == "Enroll Sam Ortiz in Q4 lender win-back"
    assert json.loads(enroll["value"]) == {"card": 42, "fp": "3f9a0c1d2e4b5a6978c0"}


def test_a_referral_without_an_email_asks_for_it_and_an_enrolled_one_offers_nothing() -> None:
    no_email = reply_card(action_payload=reply_payload(referral=referral(email=None)))
    enrolled = reply_card(action_payload=reply_payload(referral=referral(enrolled_job_id=31)))
    # As place_referral stores a referral whose text named no address: no contact either.
    no_contact = reply_card(
        action_payload=reply_payload(referral=referral(email=None, contact_id=None))
    )
    nameless = reply_card(
        action_payload=reply_payload(referral=referral(email=None, contact_id=None, name=None))
    )

    assert referral_offer(no_email) == "Add Sam Ortiz's email & enroll"
    assert referral_offer(no_contact) == "Add Sam Ortiz's email & enroll"
    assert referral_offer(nameless) == "Add their email & enroll"
    assert referral_offer(enrolled) is None
    buttons = [
        e
        for b in message(view_of(nameless))["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("action_id") == ActionId.ENROLL_REFERRAL
    ]
    assert [b["text"]["text"] for b in buttons] == ["Add their email & enroll"]
    text = json.dumps(message(view_of(enrolled)), ensure_ascii=False)
    assert "✅ Enrolled in Q4 lender win-back (job #31)" in text
    assert ActionId.ENROLL_REFERRAL.value not in text


def test_a_paused_contact_a_routing_note_and_an_auto_sent_answer_each_have_a_line() -> None:
    auto = "auto-sent because STATUS at 0.97 ≥ 0.95 and the organization allows it"
    resume = datetime(2027, 1, 4, 15, 0, tzinfo=UTC)
    card = reply_card(
        state=CardState.DONE,
        executed_at=NOW,
        action_payload=reply_payload(
            intent="not_now",
            paused_until=resume.isoformat(),
            pause_words="try me in January",
            auto_reason=auto,
            routing_note="posted to your DM: Salesbot is not in #sales; /invite @Salesbot there",
        ),
    )
    payload = message(view_of(card))
    contexts = [b["elements"][0]["text"] for b in payload["blocks"] if b["type"] == "context"]
    assert contexts[-4:] == [
        f"⏸ Paused until <!date^{int(resume.timestamp())}^{{date_long}}|2027-01-04 15:00 UTC>"
        " (“try me in January”): no campaign email reaches them before.",
        f"🤖 {auto}",
        "📍 posted to your DM: Salesbot is not in #sales; /invite @Salesbot there",
        f"✅ Auto-sent at <!date^{int(NOW.timestamp())}^{{time}}|15:30 UTC>",
    ]
    assert not [b for b in payload["blocks"] if b["type"] == "actions"]


def test_a_sent_reply_says_who_sent_it() -> None:
    card = reply_card(state=CardState.DONE, executed_at=NOW, approved_by=3)
    status = message(view_of(card, actor_slack_id=REP))["blocks"][-1]
    assert status["elements"][0]["text"].startswith(f"✅ Reply sent by <@{REP}> at <!date^")


def test_a_snoozed_card_says_until_when_and_by_whom_and_offers_only_unsnooze() -> None:
    until = NOW + timedelta(hours=1)
    card = reply_card(snoozed_until=until, action_payload=reply_payload(snoozed_by=3))
    payload = message(view_of(card, snoozed_by_slack_id=REP))
    assert_matches_snapshot("reply_card_snoozed", payload)
    actions = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for b in actions for e in b["elements"]] == [ActionId.UNSNOOZE]


def test_the_menus_carry_the_choice_and_the_card() -> None:
    blocks = message(view_of(reply_card()))["blocks"]
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    menus = {e["action_id"]: e for e in actions["elements"] if "options" in e}
    values = [o["value"] for menu in menus.values() for o in menu["options"]]

    assert menus[ActionId.CARD_MORE]["type"] == "overflow"
    assert menus[ActionId.CARD_SNOOZE]["type"] == "static_select"
    assert [parse_menu_value(v) for v in values] == [
        (OverflowChoice.SNOOZE_HOUR, 42),
        (OverflowChoice.SNOOZE_TOMORROW, 42),
        (OverflowChoice.SNOOZE_NEXT_WEEK, 42),
        (OverflowChoice.VIEW_THREAD, 42),
        (OverflowChoice.OPEN_CONTACT, 42),
        (OverflowChoice.RELABEL, 42),
    ]
    with pytest.raises(ValueError, match="does not name a card"):
        parse_menu_value("explode:42")


def test_a_100_kb_reply_stays_within_slack_s_limits() -> None:
    huge = ("Order AO-1 & <b>fee</b> for 12 Main St. " * 2600)[:100_000]
    card = reply_card(
        title="Reply: " + huge[:300],
        description=huge,
        action_payload=reply_payload(
            from_name=huge[:5000],
            subject=huge,
            reply_text=huge,
            client_history=huge,
            campaign_name=huge,
            body=huge,
            facts_used=[huge] * 50,
            draft_source="template",
            draft_note=huge,
            routing_note=huge,
            entities={
                "order_numbers": [huge] * 20,
                "property_addresses": [huge] * 20,
                "amounts": [huge] * 20,
                "dates": [huge] * 20,
                "urgency": huge,
            },
            proposed_times=[{"start": None, "end": None, "words": huge}] * 50,
            referral=referral(name=huge, words=huge, campaign_name=huge),
        ),
    )
    payload = message(view_of(card, contact_title=huge, company_name=huge))
    within_slack_limits(payload)
    mrkdwn = [payload["text"], *_all_texts(payload["blocks"])]
    assert not [t for t in mrkdwn if "<b>" in t]  # plain_text (button labels) shows it as is
    assert "&lt;b&gt;" in payload["text"]
    assert len(json.dumps(payload)) < 60_000


PINGS = "<!channel> <!here> <!everyone> <@U0BOSS01> <#C0GENERAL> @channel @here @everyone"


def test_a_reply_that_pings_the_channel_pings_nobody() -> None:
    card = reply_card(
        title=f"Reply: {PINGS}",
        action_payload=reply_payload(
            from_name=PINGS, reply_text=PINGS, subject=PINGS, body=PINGS, facts_used=[PINGS]
        ),
    )
    payload = message(view_of(card))
    texts = [payload["text"]] + _all_texts(payload["blocks"])
    for text in texts:
        assert not re.search(r"<[!@#]", text), text
        assert not re.search(
            r"(?<!\u2060)@(channel|here|everyone)\b", text.replace("@\u2060", "")
        ), text
    assert "&lt;!channel&gt;" in payload["text"]
    assert any("@\u2060channel" in t for t in texts)


def _all_texts(blocks: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for block in blocks:
        if isinstance(block.get("text"), dict) and block["text"]["type"] == "mrkdwn":
            found.append(block["text"]["text"])
        found += [f["text"] for f in block.get("fields", [])]
        if block["type"] == "context":
            found += [e["text"] for e in block["elements"]]
    return found


def test_safe_escapes_and_cuts_the_escaped_text_to_the_limit() -> None:
    assert safe("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    cut = safe("&" * 1000, 100)
    assert len(cut) <= 100
    assert cut.endswith("…")
    assert cut[:-1] == "&amp;" * 19  # never half an entity
    assert safe("ping @here and @Channel") == "ping @\u2060here and @\u2060Channel"


def thread_message(n: int, **overrides: Any) -> ThreadMessage:
    values: dict[str, Any] = {
        "direction": "us" if n % 2 == 0 else "them",
        "at": NOW - timedelta(days=30 - n),
        "address": "dana@pinnaclelending.com",
        "subject": "Turn times in TX are down, Dana" if n == 0 else "Re: Turn times",
        "text": f"Message {n}: our turn times are under six days.",
    }
    values.update(overrides)
    return ThreadMessage(**values)


def test_the_thread_modal_shows_each_message_in_order() -> None:
    thread = CardThread(
        card_id=42,
        gmail_thread_id="thread-88",
        messages=(
            thread_message(0),
            thread_message(1, text="Can you send your <fee> schedule?", answered=True),
        ),
        left_out=3,
    )
    assert_matches_snapshot("modal_thread", thread_modal(thread))


def test_a_long_thread_stays_within_a_modal_s_limits() -> None:
    huge = "<!channel> & " * 10_000
    thread = CardThread(
        card_id=42,
        gmail_thread_id="thread-88",
        messages=tuple(thread_message(n, text=huge, truncated=True) for n in range(60)),
    )
    modal = thread_modal(thread)
    assert len(modal["blocks"]) <= 100
    assert len(json.dumps(modal)) < 250_000
    assert all(len(t) <= 3000 for t in _all_texts(modal["blocks"]))
    assert "<!channel>" not in json.dumps(modal)


def test_the_message_a_card_answers_is_shown_whole_over_several_sections() -> None:
    long = "".join(f"Line {n}: the borrower & the <lender> agree.\n" for n in range(250))
    thread = CardThread(
        card_id=42,
        gmail_thread_id="thread-88",
        messages=(thread_message(0), thread_message(1, text=long, answered=True)),
    )
    blocks = thread_modal(thread)["blocks"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert len(sections) == 1 + 5
    assert "".join(sections[1:]) == safe(long, 100_000)
    assert all(len(s) <= 2900 for s in sections)


def overview(**overrides: Any) -> ContactOverview:
    entries = [
        EngagementEntry(
            id=1,
            event=EngagementEvent.SENT,
            occurred_at=NOW - timedelta(days=9),
            sentiment=None,
            score_delta=0.0,
            score_after=0.0,
            detail={},
            send=EngagementSendRef(
                id=88,
                subject="Turn times in TX are down, Dana",
                campaign_id=5,
                campaign_name="Q4 lender win-back",
                step=0,
            ),
            inbound_email=None,
        ),
        EngagementEntry(
            id=2,
            event=EngagementEvent.POSITIVE_REPLY,
            occurred_at=NOW - timedelta(days=1),
            sentiment="positive",
            score_delta=25.0,
            score_after=25.0,
            detail={},
            send=None,
            inbound_email=InboundRef(
                id=501, subject="Re: Turn times", category="OPPORTUNITY", intent="info_request"
            ),
        ),
    ]
    values: dict[str, Any] = {
        "contact_id": 11,
        "name": "Dana Whitfield",
        "email": "dana@pinnaclelending.com",
        "title": "Loan Officer",
        "company_name": "Pinnacle Lending",
        "opted_out_at": None,
        "email_status": "valid",
        "paused_until": None,
        "pause_reason": None,
        "history": EngagementHistory(
            contact_id=11,
            score=24.4,
            trend=EngagementTrend.RISING,
            last_replied_at=NOW - timedelta(days=1),
            last_positive_interaction_at=NOW - timedelta(days=1),
            entries=entries,
            next_cursor=None,
        ),
        "enrollments": (
            OpenEnrollment(
                enrollment_id=3,
                job_id=7,
                job_name="Q4 lender win-back",
                campaign_name="Q4 lender win-back",
                step=1,
                status="active",
                next_due_at=NOW + timedelta(days=3),
                paused_until=None,
            ),
        ),
        "earlier_events": 14,
    }
    values.update(overrides)
    return ContactOverview(**values)


def test_the_contact_modal_shows_score_trend_status_enrollments_and_timeline() -> None:
    assert_matches_snapshot("modal_contact", contact_modal(overview()))


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"opted_out_at": NOW}, "🚫 Opted out"),
        ({"email_status": "bounced"}, "⛔ Address bounced: no email reaches them"),
        (
            {"paused_until": NOW + timedelta(days=30), "pause_reason": "not_now"},
            "⏸ Paused until",
        ),
    ],
)
def test_the_contact_modal_says_when_they_cannot_be_reached(
    changes: dict[str, Any], status: str
) -> None:
    fields = contact_modal(overview(**changes))["blocks"][1]["fields"]
    assert fields[1]["text"].startswith(f"*Status*\n{status}")


def test_the_app_home_shows_a_reply_card_s_message_and_a_snoozed_card_as_snoozed() -> None:
    waiting = reply_card()
    snoozed = reply_card(
        id=43,
        snoozed_until=NOW + timedelta(hours=1),
        action_payload=reply_payload(snoozed_by=3),
    )
    home = home_view(
        [view_of(waiting), view_of(snoozed, snoozed_by_slack_id=REP)],
        pending_total=2,
        gmail_email="maria@lonestarappraisals.com",
        connect_url=None,
    )
    assert_matches_snapshot("home_with_reply_cards", home)


def test_the_app_home_shows_an_answer_not_drafted_yet_as_drafting_without_send() -> None:
    undrafted = {k: v for k, v in reply_payload().items() if k not in ("to", "subject", "body")}
    drafting = reply_card(
        state=CardState.SUGGESTED, action_payload=undrafted, draft_fingerprint=None
    )

    home = home_view(
        [view_of(drafting)],
        pending_total=1,
        gmail_email="maria@lonestarappraisals.com",
        connect_url=None,
    )

    text = json.dumps(home, ensure_ascii=False)
    assert "✍️ _Drafting the answer…_" in text
    buttons = [
        e["action_id"] for b in home["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert ActionId.APPROVE.value not in buttons
    assert ActionId.EDIT.value not in buttons
    assert ActionId.REJECT.value in buttons


def test_an_auto_send_a_rep_retried_says_who_sent_it_and_not_auto_sent() -> None:
    auto = "auto-sent because STATUS at 0.97 ≥ 0.95 and the organization allows it"
    retried = reply_card(
        state=CardState.DONE,
        executed_at=NOW,
        approved_by=3,
        action_payload=reply_payload(auto_reason=auto),
    )

    text = json.dumps(message(view_of(retried, actor_slack_id=REP)), ensure_ascii=False)

    assert f"Reply sent by <@{REP}>" in text
    assert "auto-sent because" not in text
