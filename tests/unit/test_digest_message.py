"""The engagement digest's message (domain/digest_message.py): every item of a busy day with
its change against the day before, a quiet day in one line, Slack's limits kept with the
overflow counted and sent to the thread, hostile names escaped, tracking only when tracked,
and the chart's image block. Every message is checked against the Block Kit rules the
Slack stand-in enforces."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.analytics import (
    CampaignFunnel,
    Counts,
    DayPoint,
    DigestFacts,
    HotReply,
    Metric,
    RankedClient,
    RevenueSignal,
    SentimentMetrics,
    TrackingCounts,
    WaitingCard,
)
from domain.digest_message import (
    MAX_BLOCKS,
    DigestMessage,
    chart_alt_text,
    render_digest,
    with_chart,
)
from sandbox.slack_api import message_block_problems
from tests.support.snapshots import assert_matches_snapshot

ZONE = "America/Chicago"
# Tue, Dec 1 2026 in Chicago (UTC−6): the day a digest posted on Wednesday morning covers.
SINCE = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
LINK = "https://sandbox-appraisals.slack.com/archives/C0SANDBOXGEN/p17646000000001{:02d}"
REP = "U0MARIA01"


def hot(n: int, **overrides: Any) -> HotReply:
    values: dict[str, Any] = {
        "contact_id": 100 + n,
        "contact_name": f"Dana Whitfield {n}",
        "contact_email": f"dana{n}@pinnaclelending.com",
        "client_name": "Pinnacle Lending",
        "days_since_order": 140 + n,
        "replied_at": SINCE + timedelta(hours=15, minutes=n),
        "inbound_email_id": 500 + n,
        "engagement_score": 70.4 + n,
        "card_id": 10 + n,
    }
    values.update(overrides)
    return HotReply(**values)


def waiting(n: int, **overrides: Any) -> WaitingCard:
    values: dict[str, Any] = {
        "card_id": 40 + n,
        "title": f"Re-engage Ray Okafor {n}",
        "created_at": UNTIL - timedelta(days=3, hours=n),
        "rep_name": "Maria Lopez",
        "rep_slack_user_id": REP,
        "slack_channel_id": "C0SANDBOXGEN",
        "slack_message_ts": f"1764600000.0001{n:02d}",
    }
    values.update(overrides)
    return WaitingCard(**values)


def funnel(n: int, name: str | None = None) -> CampaignFunnel:
    return CampaignFunnel(
        campaign_id=n,
        campaign_name=name or f"Q4 lender win-back {n}",
        lifetime=Counts(
            enrolled=1200, sent=3400, replied=120, positive=40, meetings=12, orders_after_reply=5
        ),
        period=Counts(enrolled=12, sent=40, replied=3, positive=1),
    )


def busy_facts(**overrides: Any) -> DigestFacts:
    """A day with something in every part of the digest."""
    values: dict[str, Any] = {
        "org_id": 1,
        "since": SINCE,
        "until": UNTIL,
        "sent": Metric(current=42, previous=30),
        "replies": SentimentMetrics(
            positive=Metric(current=6, previous=0),
            neutral=Metric(current=5, previous=5),
            negative=Metric(current=3, previous=4),
        ),
        "hottest": [hot(1), hot(2, card_id=None), hot(3, client_name=None, days_since_order=None)],
        "meetings": Metric(current=2, previous=1),
        "opt_outs": Metric(current=1, previous=0),
        "bounces": Metric(current=0, previous=2),
        "waiting_count": 3,
        "waiting": [
            waiting(1),
            waiting(2, rep_slack_user_id=None),
            waiting(3, rep_name=None, rep_slack_user_id=None),
        ],
        "funnels": [funnel(1)],
        "orders_after_reply": Metric(current=1, previous=1),
        "revenue": [
            RevenueSignal(
                client_id=7,
                client_name="Pinnacle Lending",
                orders=2,
                fees=900.0,
                contact_name="Dana Whitfield 1",
            )
        ],
        "trend": [
            DayPoint(day=f"2026-11-{d:02d}", sent=d, positive=d % 3, neutral=1, negative=0)
            for d in range(2, 31)
        ]
        + [DayPoint(day="2026-12-01", sent=42, positive=6, neutral=5, negative=3)],
        "stale_clients": [
            RankedClient(
                client_id=9,
                client_name="Lone Oak Mortgage",
                rank=1,
                score=0.91,
                days_since_order=210,
                past_order_rate=0.4,
                contact_id=55,
                contact_name="Bo Reyes",
                contact_email="bo@loneoak.example.com",
            )
        ],
    }
    values.update(overrides)
    return DigestFacts(**values)


def render(facts: DigestFacts, **overrides: Any) -> DigestMessage:
    values: dict[str, Any] = {
        "frequency": "daily",
        "time_zone": ZONE,
        "title": "Engagement digest",
        "permalinks": {card: LINK.format(card) for card in (11, 13, 41)},
    }
    values.update(overrides)
    return render_digest(facts, **values)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every text of the blocks, in order (section texts and fields, contexts, headers)."""
    found: list[str] = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [f["text"] for f in block.get("fields", [])]
        found += [e["text"] for e in block.get("elements", []) if "text" in e]
    return found


def assert_within_slack_limits(blocks: list[dict[str, Any]], *, room_for_chart: bool) -> None:
    assert message_block_problems(blocks) == []
    assert len(blocks) <= MAX_BLOCKS - (1 if room_for_chart else 0)
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        assert len(block.get("fields", [])) <= 10


def test_a_busy_day_shows_every_item_of_the_digest() -> None:
    message = render(busy_facts(), asked_by="U0ANA0001")

    assert_matches_snapshot(
        "digest_busy_day",
        {"text": message.text, "blocks": message.blocks, "chart_alt": message.chart_alt},
    )
    assert_within_slack_limits(message.blocks, room_for_chart=True)
    assert message.rest == []
    assert message.rest_text == ""
    shown = "\n".join(texts(message.blocks))
    for expected in (
        "Engagement digest — Tue, Dec 1",
        "asked for by <@U0ANA0001>",
        # the three hottest: linked to the card, else the address; stale for how long
        f"<{LINK.format(11)}|Dana Whitfield 1> at *Pinnacle Lending* — no order in 141 days",
        "Dana Whitfield 2 (dana2@pinnaclelending.com) at *Pinnacle Lending*",
        f"<{LINK.format(13)}|Dana Whitfield 3> — never ordered",
        # the cards waiting: count, oldest first, age, the rep (a mention when known)
        "*⏳ 3 cards waiting for approval* — oldest first",
        f"• <{LINK.format(41)}|Re-engage Ray Okafor 1> · 3 d · <@{REP}>",
        "• Re-engage Ray Okafor 2 · 3 d · Maria Lopez",
        "• Re-engage Ray Okafor 3 · 3 d · no rep",
        # the funnel, lifetime with the day's additions
        "enrolled 1,200 (+12) → sent 3,400 (+40) → replied 120 (+3) → positive 40 (+1) → "
        "meeting 12 → ordered again 5",
        "• *Pinnacle Lending* — 2 orders, $900.00 in fees (after Dana Whitfield 1 replied)",
        "*📞 1 client worth a call this week*",
        "• *Lone Oak Mortgage* — no order in 210 days · Bo Reyes (bo@loneoak.example.com)",
    ):
        assert expected in shown, expected
    assert "Opens and clicks" not in shown


def test_each_number_is_told_against_the_day_before() -> None:
    fields = dict(
        field["text"].split("\n")
        for field in render(busy_facts()).blocks[2]["fields"]  # the numbers' section
    )

    assert fields == {
        "📤 Sent": "*42*  ▲12 (was 30)",
        "💬 Replies": "*14*  ▲5 (was 9)",
        "👍 Positive": "*6*  new",
        "😐 Neutral": "*5*  ±0 (was 5)",
        "👎 Negative": "*3*  ▼1 (was 4)",
        "📅 Meetings booked": "*2*  ▲1 (was 1)",
        "🚫 Opt-outs": "*1*  new",
        "⛔ Bounces": "*0*  ▼2 (was 2)",
        "🧾 Orders after a reply": "*1*  ±0 (was 1)",
    }


def test_a_number_with_nothing_now_and_nothing_before_shows_no_change() -> None:
    fields = render(busy_facts(opt_outs=Metric())).blocks[2]["fields"]

    assert {"type": "mrkdwn", "text": "🚫 Opt-outs\n*0*"} in fields


def test_a_quiet_day_is_one_line_that_still_counts_the_waiting_cards() -> None:
    quiet = DigestFacts(
        org_id=1,
        since=SINCE,
        until=UNTIL,
        sent=Metric(previous=12),
        waiting_count=4,
        waiting=[waiting(1)],
        trend=[DayPoint(day="2026-11-30", sent=12)],
    )

    message = render(quiet)

    line = (
        "*Engagement digest* · No outreach activity yesterday (Tue, Dec 1) — 4 cards still "
        "wait for approval"
    )
    assert message.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": line}}]
    assert message.text == (
        "Engagement digest: No outreach activity yesterday (Tue, Dec 1) — 4 cards waiting for "
        "approval"
    )
    assert message.rest == []


def test_a_quiet_week_with_nothing_waiting_says_only_that() -> None:
    week = DigestFacts(org_id=1, since=SINCE - timedelta(days=1), until=UNTIL + timedelta(days=5))

    message = render(week, frequency="weekly", asked_by="U0ANA0001")

    assert texts(message.blocks) == [
        "*Engagement digest* · No outreach activity last week (Mon, Nov 30 – Sun, Dec 6)"
        " · asked for by <@U0ANA0001>"
    ]


def test_a_quiet_digest_asked_for_now_says_today_so_far_not_yesterday() -> None:
    # `/digest now` at 10:30 in Chicago on Wed, Dec 2: local midnight to now.
    today = DigestFacts(org_id=1, since=UNTIL, until=UNTIL + timedelta(hours=10, minutes=30))
    week = DigestFacts(org_id=1, since=UNTIL - timedelta(days=6, hours=14), until=today.until)

    assert texts(render(today, asked_by="U0ANA0001").blocks) == [
        "*Engagement digest* · No outreach activity today so far (Wed, Dec 2)"
        " · asked for by <@U0ANA0001>"
    ]
    assert texts(render(week, frequency="weekly").blocks) == [
        "*Engagement digest* · No outreach activity in the last 7 days (Wed, Nov 25 – Wed, Dec 2)"
    ]


def test_one_waiting_card_waits_in_the_singular() -> None:
    quiet = DigestFacts(org_id=1, since=SINCE, until=UNTIL, waiting_count=1)

    assert texts(render(quiet).blocks)[0].endswith("— 1 card still waits for approval")


def test_a_weekly_digest_is_titled_by_its_week_and_compared_with_the_week_before() -> None:
    facts = busy_facts(since=SINCE - timedelta(days=1), until=UNTIL + timedelta(days=5))

    message = render(facts, frequency="weekly", title="Q4 win-back digest")

    assert message.blocks[0]["text"]["text"] == "Q4 win-back digest — Week of Mon, Nov 30"
    assert texts(message.blocks)[1] == (
        "Mon, Nov 30 – Sun, Dec 6 · America/Chicago · compared with the week before"
    )
    assert "(+n) is what this week added" in "\n".join(texts(message.blocks))
    assert message.text.startswith("Q4 win-back digest — Week of Mon, Nov 30: 42 sent")


def test_an_unknown_time_zone_reads_as_utc() -> None:
    message = render(busy_facts(), time_zone="Mars/Olympus_Mons")

    assert texts(message.blocks)[1] == (
        "Tue, Dec 1 – Wed, Dec 2 · UTC · compared with the day before"
    )


def test_tracking_shows_opens_and_clicks_of_people_and_bots_apart() -> None:
    tracking = TrackingCounts(
        tracked_sends=40, opened=18, clicked=5, bot_opens=9, bot_clicks=3, open_rate=0.45
    )

    message = render(busy_facts(tracking=tracking))

    assert message.blocks[3] == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*👀 Opens and clicks* of 40 tracked sends\n"
            "Opened by a person: *18* (45%) · clicked: *5* (12%)\n"
            "Bots and mail proxies, not counted above: 9 opens, 3 clicks",
        },
    }


def oversized() -> DigestFacts:
    return busy_facts(
        hottest=[hot(n) for n in range(1, 8)],
        waiting_count=250,
        waiting=[waiting(n % 90, card_id=1000 + n) for n in range(200)],
        funnels=[funnel(n) for n in range(80)],
    )


def test_an_oversized_digest_keeps_slacks_limits_and_sends_the_rest_to_the_thread() -> None:
    message = render(oversized())

    assert_within_slack_limits(message.blocks, room_for_chart=True)
    assert_within_slack_limits(message.rest, room_for_chart=False)
    # 4 of the 7 hottest replies, 190 of the 200 cards listed, 70 of the 80 campaigns
    assert texts(message.blocks)[-1] == "…and 264 more — see the thread"
    shown = "\n".join(texts(message.blocks))
    assert shown.count("• ") == 3 + 10 + 10 + 1 + 1  # hottest, cards, campaigns, revenue, calls
    in_thread = "\n".join(texts(message.rest))
    assert in_thread.count("\n• Re-engage Ray Okafor") == 190
    assert in_thread.count("• *Q4 lender win-back") == 70
    assert in_thread.count("• Dana Whitfield") == 4
    assert "…and 50 more not listed: each rep's App Home shows theirs." in in_thread
    assert "cannot hold" not in in_thread
    assert message.rest_text == "Engagement digest — Tue, Dec 1, continued: 264 more"


def test_what_even_the_thread_cannot_hold_is_counted_at_its_end() -> None:
    title = "Re-engage " + "a very long-winded title " * 8  # 210 characters: cut at 200
    facts = busy_facts(
        waiting_count=3000,
        waiting=[waiting(n % 90, card_id=5000 + n, title=title) for n in range(3000)],
    )

    message = render(facts)

    assert_within_slack_limits(message.rest, room_for_chart=False)
    assert len(message.rest) == MAX_BLOCKS
    in_thread = texts(message.rest)
    listed = "\n".join(in_thread).count("• Re-engage")
    assert in_thread[-1] == f"…and {2990 - listed:,} more that one Slack message cannot hold."
    assert texts(message.blocks)[-1] == "…and 2,990 more — see the thread"


HOSTILE = "<!channel> *Dana* & <https://evil.example.com|click> @here"


def test_hostile_names_and_titles_are_escaped_and_mention_no_one() -> None:
    facts = busy_facts(
        hottest=[hot(1, contact_name=HOSTILE, client_name=HOSTILE)],
        waiting=[waiting(1, title=HOSTILE, rep_name=HOSTILE, rep_slack_user_id="<!here>")],
        funnels=[funnel(1, name=HOSTILE)],
        revenue=[
            RevenueSignal(client_id=1, client_name=HOSTILE, orders=1, fees=None, contact_name=None)
        ],
    )

    message = render(facts, title="<!everyone> digest", asked_by="<!channel>")

    everything = "\n".join(texts(message.blocks[1:]))  # mrkdwn: all but the header
    assert "<!" not in everything
    assert "<https://evil" not in everything
    assert "@here" not in everything  # a word joiner after the @ disarms it
    assert "&lt;!channel&gt; *Dana* &amp; &lt;https://evil.example.com|click&gt; @\u2060here" in (
        everything
    )
    assert "&lt;!here&gt;" not in everything  # a rep id that is no Slack id is not shown as one
    assert message.blocks[0]["text"] == {
        "type": "plain_text",
        "text": "<!everyone> digest — Tue, Dec 1",  # plain text: Slack shows it as typed
        "emoji": True,
    }
    assert message.text.startswith("&lt;!everyone&gt; digest — Tue, Dec 1")


def test_a_permalink_that_could_break_out_of_its_link_is_not_used() -> None:
    message = render(busy_facts(), permalinks={11: "https://x.slack.com/a|<!channel>", 41: "x"})

    shown = "\n".join(texts(message.blocks))
    assert "• Dana Whitfield 1 (dana1@pinnaclelending.com)" in shown
    assert "• Re-engage Ray Okafor 1 · 3 d" in shown
    assert "<!channel>" not in shown


def test_a_long_title_is_cut_to_a_headers_150_characters() -> None:
    header = render(busy_facts(), title="Digest " * 40).blocks[0]["text"]["text"]

    assert len(header) == 150
    assert header.endswith("…")


def test_the_chart_goes_after_the_header_and_keeps_the_message_valid() -> None:
    message = render(oversized())

    blocks = with_chart(message.blocks, "F0SB000123", message.chart_alt)

    assert blocks[1] == {
        "type": "image",
        "slack_file": {"id": "F0SB000123"},
        "alt_text": message.chart_alt,
        "title": {"type": "plain_text", "text": "Sends and replies, last 30 days", "emoji": True},
    }
    assert blocks[0] == message.blocks[0]
    assert blocks[2:] == message.blocks[1:]
    assert_within_slack_limits(blocks, room_for_chart=False)


def test_a_chart_goes_first_in_a_message_without_a_header() -> None:
    quiet = render(DigestFacts(org_id=1, since=SINCE, until=UNTIL))

    blocks = with_chart(quiet.blocks, "F0SB000123", "")

    assert [b["type"] for b in blocks] == ["image", "section"]
    assert blocks[0]["alt_text"] == "A chart of the digest's numbers"


def test_a_full_message_has_no_room_for_a_chart() -> None:
    full = [{"type": "divider"}] * MAX_BLOCKS

    with pytest.raises(ValueError, match="no room for the chart"):
        with_chart(full, "F0SB000123", "chart")


def test_the_charts_alt_text_sums_the_days_and_names_the_busiest() -> None:
    points = [
        DayPoint(day="2026-11-30", sent=12, positive=1, neutral=0, negative=2),
        DayPoint(day="2026-12-01", sent=40, positive=3, neutral=1, negative=0),
    ]

    assert chart_alt_text(points) == (
        "Sends and replies per day, Nov 30 – Dec 1: 52 sent; replies 4 positive, 1 neutral, "
        "2 negative. Most sends on Dec 1 (40)."
    )
    assert chart_alt_text([]) == "No sends or replies to chart."
    assert chart_alt_text([DayPoint(day="2026-12-01")]) == (
        "Sends and replies per day, Dec 1 – Dec 1: 0 sent; replies 0 positive, 0 neutral, "
        "0 negative."
    )


def test_every_age_reads_in_days_hours_or_minutes() -> None:
    cards = [
        waiting(1, created_at=UNTIL - timedelta(days=12, hours=5)),
        waiting(2, created_at=UNTIL - timedelta(hours=7, minutes=59)),
        waiting(3, created_at=UNTIL - timedelta(minutes=20)),
        waiting(4, created_at=UNTIL),
    ]

    shown = "\n".join(texts(render(busy_facts(waiting=cards, waiting_count=4)).blocks))

    ages = re.findall(r"Okafor \d>? · ([^·]+?) ·", shown)
    assert ages == ["12 d", "7 h", "20 min", "1 min"]
