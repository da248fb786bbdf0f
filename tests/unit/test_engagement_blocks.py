"""`/engagement`'s answers as exact JSON: a contact's engagement (header, scores, totals,
latest events newest first), the list to pick from, and the query as Slack sends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.card_details import ContactOverview
from domain.contacts import ContactMatch, EngagementTrend
from domain.engagement import (
    EngagementEntry,
    EngagementEvent,
    EngagementHistory,
    InboundRef,
    SendRef,
)
from handlers.slack.blocks import (
    contact_choices_message,
    engagement_message,
    engagement_totals_line,
    no_contact_text,
)
from handlers.slack.engagement import parse_query, pick
from sandbox.slack_api import message_block_problems
from tests.support.snapshots import assert_matches_snapshot

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
E = EngagementEvent


def entry(n: int, event: EngagementEvent, days_ago: int, **more: Any) -> EngagementEntry:
    values: dict[str, Any] = {
        "id": n,
        "event": event,
        "occurred_at": NOW - timedelta(days=days_ago),
        "sentiment": None,
        "score_delta": 0.0,
        "score_after": None,
        "detail": {},
        "send": None,
        "inbound_email": None,
    }
    values.update(more)
    return EngagementEntry(**values)


def maria(**overrides: Any) -> ContactOverview:
    entries = [  # oldest first, as storage gives them
        entry(
            1,
            E.SENT,
            10,
            score_after=0.0,
            send=SendRef(
                id=88,
                subject="Turn times in TX are down, Maria",
                campaign_id=5,
                campaign_name="Q4 lender win-back",
                step=0,
            ),
        ),
        entry(
            2,
            E.POSITIVE_REPLY,
            9,
            sentiment="positive",
            score_after=25.0,
            inbound_email=InboundRef(
                id=501, subject="Re: Turn times", category="OPPORTUNITY", intent="interested"
            ),
        ),
        entry(
            3,
            E.REPLIED,
            4,
            sentiment="neutral",
            score_after=31.2,
            inbound_email=InboundRef(
                id=502, subject="Re: Following up", category="STATUS", intent=None
            ),
        ),
        entry(4, E.ORDER_AFTER_REPLY, 2, score_after=68.9, detail={"order_id": 77}),
    ]
    values: dict[str, Any] = {
        "contact_id": 11,
        "name": "Maria Lopez",
        "email": "maria@pinnaclelending.com",
        "title": "Loan Officer",
        "company_name": "Pinnacle Lending",
        "opted_out_at": None,
        "email_status": "valid",
        "paused_until": None,
        "pause_reason": None,
        "history": EngagementHistory(
            contact_id=11,
            score=66.4,
            trend=EngagementTrend.RISING,
            last_replied_at=NOW - timedelta(days=4),
            last_positive_interaction_at=NOW - timedelta(days=2),
            entries=entries,
            next_cursor=None,
        ),
        "earlier_events": 3,
    }
    values.update(overrides)
    return ContactOverview(**values)


TOTALS = {
    (E.SENT, None): 5,
    (E.POSITIVE_REPLY, "positive"): 1,
    (E.REPLIED, "neutral"): 1,
    (E.REPLIED, None): 1,
    (E.ORDER_AFTER_REPLY, "positive"): 1,
    (E.OUT_OF_OFFICE, None): 2,
}


def test_a_contacts_engagement_shows_who_their_scores_totals_and_latest_events() -> None:
    text, blocks = engagement_message(maria(), lead_score=72, totals=TOTALS)

    assert_matches_snapshot("engagement_contact", {"text": text, "blocks": blocks})
    assert message_block_problems(blocks) == []
    timeline = blocks[4]["text"]["text"].splitlines()
    assert timeline[0] == "*Latest events*, newest first · 4 of 7"
    assert [line.split(" · ", 1)[1] for line in timeline[1:]] == [
        "🧾 Ordered after a reply · score 69",
        "💬 Replied (neutral) · _Re: Following up_ · score 31",
        "👍 Positive reply · _Re: Turn times_ · score 25",
        "📤 Sent · _Turn times in TX are down, Maria_ (Q4 lender win-back step 1) · score 0",
    ]


def test_the_totals_count_replies_by_sentiment_and_name_only_what_happened() -> None:
    assert engagement_totals_line(TOTALS) == (
        "*Totals* · 5 sent · 3 replies (1 positive, 2 neutral) · 1 order after a reply"
    )
    assert engagement_totals_line({}) == "*Totals* · 0 sent · 0 replies"
    assert (
        engagement_totals_line(
            {(E.SENT, None): 1, (E.MEETING_REQUEST, "positive"): 2, (E.BOUNCED, None): 1}
        )
        == "*Totals* · 1 sent · 2 replies (2 positive) · 2 meetings asked for · 1 bounce"
    )


def test_a_contact_without_events_or_lead_score_says_so() -> None:
    quiet = maria(
        history=maria().history.model_copy(
            update={"entries": [], "score": 0.0, "trend": EngagementTrend.UNKNOWN}
        ),
        earlier_events=0,
    )

    _, blocks = engagement_message(quiet, lead_score=None, totals={})

    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields[:2] == ["*Lead score*\nnot scored yet", "*Engagement now*\n0/100 · trend unknown"]
    assert blocks[4]["text"]["text"] == (
        "*Latest events*, newest first\nNothing yet: no email sent to them, no reply from them."
    )


def test_a_hostile_contact_is_escaped_everywhere() -> None:
    hostile = "<!channel> *Eve* & <https://evil.example.com|click>"
    text, blocks = engagement_message(
        maria(name=hostile, title=hostile, company_name=hostile), lead_score=1, totals={}
    )

    assert "<!channel>" not in blocks[0]["text"]["text"]
    assert blocks[0]["text"]["text"].startswith(
        "📇 *&lt;!channel&gt; *Eve* &amp; &lt;https://evil.example.com|click&gt;*"
    )
    assert "<!channel>" not in text


def match(n: int, name: str, email: str, client: str | None = "Pinnacle Lending") -> ContactMatch:
    return ContactMatch(
        contact_id=n,
        name=name,
        email=email,
        client_name=client,
        lead_score=None,
        engagement_score=0.0,
    )


def test_several_matches_are_listed_with_their_addresses_to_pick_from() -> None:
    found = [
        match(1, "Maria Lopez", "maria@pinnaclelending.com"),
        match(2, "Maria Lozano", "mlozano@lonestar.example.com", client=None),
    ]

    text, blocks = contact_choices_message("maria lo", found, more=False)

    assert text == "2 contacts match “maria lo”"
    assert blocks == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Did you mean:* (“maria lo” matches more than one contact)\n"
                "• *Maria Lopez* — maria@pinnaclelending.com · Pinnacle Lending\n"
                "• *Maria Lozano* — mlozano@lonestar.example.com",
            },
        },
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "`/engagement &lt;email&gt;` shows one of them."}
            ],
        },
    ]


def test_eleven_matches_list_ten_and_ask_for_more_of_the_name() -> None:
    found = [match(n, f"Dana {n}", f"dana{n}@x.example.com") for n in range(11)]

    text, blocks = contact_choices_message("dana", found, more=True)

    lines = blocks[0]["text"]["text"].splitlines()
    assert text == "10+ contacts match “dana”"
    assert len(lines) == 1 + 10 + 1
    assert lines[-1] == "…and more: type more of the name, or the address."


def test_no_match_says_how_to_search_and_escapes_what_was_typed() -> None:
    assert no_contact_text("<!here> x") == (
        "No contact of your organization matches “&lt;!here&gt; x”. Give their email "
        "address, or the start of a first, last or full name: `/engagement maria@pinnacle.com`,"
        " `/engagement lopez`, `/engagement maria lo`."
    )


@pytest.mark.parametrize(
    ("typed", "query"),
    [
        (
            "<mailto:maria@pinnaclelending.com|maria@pinnaclelending.com>",
            "maria@pinnaclelending.com",
        ),
        ("  Maria \n  Lopez ", "Maria Lopez"),
        ("O&#39;Brien &amp; Sons", "O'Brien & Sons"),
        ("&lt;!channel&gt;", "<!channel>"),
        (None, ""),
    ],
)
def test_the_query_is_read_as_typed(typed: str | None, query: str) -> None:
    assert parse_query(typed) == query


def test_the_one_meant_is_the_only_match_or_the_only_exact_one() -> None:
    lopez = match(1, "Maria Lopez", "maria@pinnaclelending.com")
    lopez_garza = match(2, "Maria Lopez Garza", "mlg@pinnaclelending.com")
    lozano = match(3, "Maria Lozano", "mlozano@pinnaclelending.com")

    assert pick([lopez], "mar") == lopez
    assert pick([lopez, lopez_garza], "maria lopez") == lopez
    assert pick([lopez, lopez_garza], "MLG@pinnaclelending.com") == lopez_garza
    assert pick([lopez, lozano], "maria lo") is None
    assert pick([], "maria") is None
