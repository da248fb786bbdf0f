"""The engagement digest as a Slack message: DigestFacts rendered to Block Kit (issue 14).

Pure: the facts (domain/analytics.py), the subscription's frequency, time zone and title,
and the permalinks of the reply and waiting cards are all it reads. What it makes:

- `blocks`: a header ("Engagement digest — Tue, Dec 1", weekly "… — Week of Mon, Nov 23"),
  the period's numbers each against the period before (▲/▼/± and the number before, "new"
  when there was none), the three hottest replies, the cards waiting for approval, each
  running campaign's funnel, the orders that followed a reply, the clients worth a call,
  and opens and clicks when the organization tracks them;
- `rest`: what the message does not show, for a reply in its thread. Each list shows at
  most LIST_SHOWN items (HOTTEST_SHOWN replies) so that the message reads at a glance;
  the others, and anything Slack's limits would not take, go to the thread, and the
  message ends with "…and N more — see the thread";
- a quiet period (`facts.empty`) is one line, not a wall of zeros, that still counts the
  cards waiting for approval.

Slack's limits are kept: 50 blocks a message (one left free for `with_chart`'s image),
3,000 characters a section, 150 a header, 10 fields a section. Names, titles and
addresses come from outside and are escaped (domain/mrkdwn.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final, Literal

from domain.analytics import (
    TREND_DAYS,
    CampaignFunnel,
    Counts,
    DayPoint,
    DigestFacts,
    HotReply,
    Metric,
    NewsletterLine,
    RankedClient,
    ReputationLine,
    RevenueSignal,
    TrackingCounts,
    WaitingCard,
)
from domain.cadence import time_zone as checked_time_zone
from domain.content import ContentWeek, channel_label, describe_day
from domain.errors import InvalidInput
from domain.mrkdwn import escape, safe

Frequency = Literal["daily", "weekly"]

MAX_BLOCKS: Final = 50
SECTION_CHARS: Final = 3000
HEADER_CHARS: Final = 150
MAX_FIELDS: Final = 10
ALT_TEXT_CHARS: Final = 2000
#: Replies the message shows; more go to the thread.
HOTTEST_SHOWN: Final = 3
#: Items of any other list the message shows; more go to the thread.
LIST_SHOWN: Final = 10
DEFAULT_TITLE: Final = "Engagement digest"
CHART_TITLE: Final = f"Sends and replies, last {TREND_DAYS} days"

_SLACK_USER: Final = re.compile(r"[UW][A-Z0-9]{2,20}")
# A link's target may not hold what ends it in mrkdwn; a permalink never does.
_LINK_BREAKERS: Final = frozenset(" <>|\n\r\t")
_NAME: Final = 200
_EMAIL: Final = 320


@dataclass(frozen=True)
class DigestMessage:
    """A digest ready to post: `text` (notification and fallback), `blocks`, and `rest`
    (blocks for a reply in the message's thread; empty when everything fit)."""

    text: str
    blocks: list[dict[str, Any]]
    rest: list[dict[str, Any]] = field(default_factory=list)
    chart_alt: str = ""
    #: The fallback text of the thread reply (empty with `rest`).
    rest_text: str = ""


def render_digest(
    facts: DigestFacts,
    *,
    frequency: Frequency,
    time_zone: str,
    title: str,
    permalinks: Mapping[int, str],
    asked_by: str | None = None,
) -> DigestMessage:
    """Render a period's digest; `permalinks` maps card ids to their Slack messages' links,
    `asked_by` is the Slack user who asked for it (`/digest now`), None when scheduled."""
    zone, zone_name = _zone(time_zone)
    title = " ".join(title.split()) or DEFAULT_TITLE
    period = _Period(facts.since, facts.until, zone, frequency)
    chart_alt = chart_alt_text(facts.trend)
    asker = _mention(asked_by) if asked_by else None
    if facts.empty:
        return _quiet(facts, title=title, period=period, asker=asker, chart_alt=chart_alt)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"{title} — {period.label}", HEADER_CHARS)},
        _context(_period_line(period, zone_name, asker)),
        {"type": "section", "fields": [_mrkdwn(f) for f in _overview(facts)][:MAX_FIELDS]},
    ]
    if facts.tracking is not None:
        blocks.append(_section(_tracking(facts.tracking)))
    if facts.reputation is not None:
        blocks.append(_section(reputation_line(facts.reputation)))
    if facts.content is not None:
        blocks.append(_section(content_week(facts.content, zone_name)))
    if facts.newsletters:
        blocks.append(_section(newsletter_lines(facts.newsletters)))
    blocks.append({"type": "divider"})
    groups = _groups(facts, zone=zone, period=period, permalinks=permalinks)
    # One block stays free for the chart's image, one for the line that points to the thread.
    shown, moved = _fill(blocks, groups, budget=MAX_BLOCKS - 2)
    rest, dropped = _thread(moved)
    moved_count = sum(len(items) for _, items, _ in moved)
    if rest:
        blocks = shown + [_context(f"…and {moved_count:,} more — see the thread")]
        if dropped:
            rest.append(_context(f"…and {dropped:,} more that one Slack message cannot hold."))
    else:
        blocks = shown
    text = _summary(facts, title=title, period=period)
    rest_text = f"{escape(title)} — {period.label}, continued: {moved_count:,} more" if rest else ""
    return DigestMessage(
        text=text, blocks=blocks, rest=rest, chart_alt=chart_alt, rest_text=rest_text
    )


def with_chart(
    blocks: Sequence[dict[str, Any]], file_id: str, alt: str, *, title: str = CHART_TITLE
) -> list[dict[str, Any]]:
    """The blocks with the chart's image (an uploaded Slack file) after the header."""
    if len(blocks) >= MAX_BLOCKS:
        raise ValueError(f"a message holds {MAX_BLOCKS} blocks: no room for the chart")
    image = {
        "type": "image",
        "slack_file": {"id": file_id},
        "alt_text": _cut(alt.strip() or "A chart of the digest's numbers", ALT_TEXT_CHARS),
        "title": _plain(title, ALT_TEXT_CHARS),
    }
    at = 1 if blocks and blocks[0].get("type") == "header" else 0
    return [*blocks[:at], image, *blocks[at:]]


def chart_alt_text(points: Sequence[DayPoint]) -> str:
    """What the trend chart shows, in words (the image block's alt text)."""
    if not points:
        return "No sends or replies to chart."
    sent = sum(p.sent for p in points)
    positive = sum(p.positive for p in points)
    neutral = sum(p.neutral for p in points)
    negative = sum(p.negative for p in points)
    first, last = _short_day(points[0].day), _short_day(points[-1].day)
    text = (
        f"Sends and replies per day, {first} – {last}: {sent:,} sent; replies "
        f"{positive:,} positive, {neutral:,} neutral, {negative:,} negative."
    )
    busiest = max(points, key=lambda p: p.sent)
    if busiest.sent:
        text += f" Most sends on {_short_day(busiest.day)} ({busiest.sent:,})."
    return _cut(text, ALT_TEXT_CHARS)


# --- the period --------------------------------------------------------------------------


class _Period:
    """The period in the digest's time zone, in words."""

    def __init__(self, since: datetime, until: datetime, zone: tzinfo, frequency: str) -> None:
        self.weekly = frequency == "weekly"
        self.first = since.astimezone(zone).date()
        self.last = (until - timedelta(microseconds=1)).astimezone(zone).date()
        self.zone = zone
        self.unit = "week" if self.weekly else "day"
        # A scheduled period runs from local midnight to local midnight; `/digest now`
        # reports today so far (or the last 7 days) and ends now.
        self.whole = all(t.astimezone(zone).time() == time(0) for t in (since, until))

    @property
    def label(self) -> str:
        """ "Tue, Dec 1", or "Week of Mon, Nov 23"."""
        return f"Week of {_day(self.first)}" if self.weekly else _day(self.first)

    @property
    def span(self) -> str:
        if self.weekly or self.last != self.first:
            return f"{_day(self.first)} – {_day(self.last)}"
        return _day(self.first)

    @property
    def quiet(self) -> str:
        """ "yesterday (Tue, Dec 1)", "last week (Mon, Nov 23 – Sun, Nov 29)"; asked for
        now: "today so far (Wed, Dec 2)", "in the last 7 days (Wed, Nov 25 – Wed, Dec 2)"."""
        if self.weekly:
            return f"last week ({self.span})" if self.whole else f"in the last 7 days ({self.span})"
        return f"yesterday ({self.span})" if self.whole else f"today so far ({self.span})"


def _zone(name: str) -> tuple[tzinfo, str]:
    """The subscription's zone; an unknown name (Slack's free text) reads as UTC."""
    try:
        return checked_time_zone(name), name
    except InvalidInput:
        return UTC, "UTC"


def _day(day: date) -> str:
    return f"{day:%a}, {day:%b} {day.day}"


def _short_day(day: str) -> str:
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        return safe(day, 20)
    return f"{parsed:%b} {parsed.day}"


def _period_line(period: _Period, zone_name: str, asker: str | None) -> str:
    line = f"{period.span} · {safe(zone_name, 64)} · compared with the {period.unit} before"
    return f"{line} · asked for by {asker}" if asker else line


# --- pieces -------------------------------------------------------------------------------


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(text, limit), "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _mention(slack_user_id: str) -> str:
    """A Slack user as a mention; anything that is not a user id is shown as text."""
    if _SLACK_USER.fullmatch(slack_user_id):
        return f"<@{slack_user_id}>"
    return safe(slack_user_id, 64)


def _link(url: str | None, label: str) -> str:
    """`label` linked to `url` (a card's permalink); the label alone for a doubtful URL."""
    if (
        url
        and url.startswith("https://")
        and len(url) <= 500
        and not _LINK_BREAKERS.intersection(url)
    ):
        return f"<{url}|{label}>"
    return label


def _change(metric: Metric) -> str:
    """ "▲12 (was 30)", "▼3 (was 9)", "±0 (was 4)", "new" (none before), "" (none at all)."""
    if metric.previous == 0:
        return "new" if metric.current else ""
    delta = metric.change
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else "±"
    return f"{arrow}{abs(delta):,} (was {metric.previous:,})"


def _number(metric: Metric) -> str:
    change = _change(metric)
    return f"*{metric.current:,}*  {change}" if change else f"*{metric.current:,}*"


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 86_400:
        return f"{seconds // 86_400} d"
    if seconds >= 3_600:
        return f"{seconds // 3_600} h"
    return f"{max(1, seconds // 60)} min"


def _since_order(days: int | None) -> str:
    return "never ordered" if days is None else f"no order in {_plural(days, 'day')}"


# --- the numbers ----------------------------------------------------------------------------


def _overview(facts: DigestFacts) -> list[str]:
    replies = facts.replies
    return [
        f"📤 Sent\n{_number(facts.sent)}",
        f"💬 Replies\n{_number(replies.total)}",
        f"👍 Positive\n{_number(replies.positive)}",
        f"😐 Neutral\n{_number(replies.neutral)}",
        f"👎 Negative\n{_number(replies.negative)}",
        f"📅 Meetings booked\n{_number(facts.meetings)}",
        f"🚫 Opt-outs\n{_number(facts.opt_outs)}",
        f"⛔ Bounces\n{_number(facts.bounces)}",
        f"🧾 Orders after a reply\n{_number(facts.orders_after_reply)}",
    ]


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "0%"


def _tracking(tracking: TrackingCounts) -> str:
    sends = tracking.tracked_sends
    return (
        f"*👀 Opens and clicks* of {_plural(sends, 'tracked send')}\n"
        f"Opened by a person: *{tracking.opened:,}* ({_rate(tracking.opened, sends)}) · "
        f"clicked: *{tracking.clicked:,}* ({_rate(tracking.clicked, sends)})\n"
        f"Bots and mail proxies, not counted above: {_plural(tracking.bot_opens, 'open')}, "
        f"{_plural(tracking.bot_clicks, 'click')}"
    )


def reputation_line(line: ReputationLine) -> str:
    """The digest's reputation section: the period's reviews (docs/reputation.md)."""
    rating = f"{line.average_rating:.1f}★" if line.average_rating is not None else "—"
    return (
        f"*⭐ Reputation* · {_plural(line.reviews, 'new review')}, average {rating} · "
        f"{line.negative:,} negative · {line.unresponded:,} awaiting a response · "
        f"{line.escalated:,} escalated"
    )


#: Scheduled posts the digest lists; `/content list` shows them all.
CONTENT_LINES: Final = 12


def content_week(week: ContentWeek, time_zone: str) -> str:
    """The digest's "This week's content": each post of the week with its channel, day and
    status (docs/content-calendar.md)."""
    done = sum(1 for item in week.items if item.status.value == "done")
    lines = [
        f"*🗓️ This week's content* · {_plural(len(week.items), 'scheduled post')}, {done:,} done"
    ]
    for item in week.items[:CONTENT_LINES]:
        lines.append(
            f"• {describe_day(item.scheduled_for, time_zone)} · {channel_label(item.channel)} · "
            f"{safe(item.title, 100)} · _{item.status.value}_"
        )
    if len(week.items) > CONTENT_LINES:
        lines.append(f"…and {len(week.items) - CONTENT_LINES:,} more: `/content list`")
    return "\n".join(lines)


#: Newsletter issues the digest lists.
NEWSLETTER_LINES: Final = 10


def newsletter_lines(lines: Sequence[NewsletterLine]) -> str:
    """The digest's newsletters: each issue that sent in the period or is on its way, with
    sent so far of its emails, bounces, unsubscribes and its (expected) finish."""
    out = [f"*📰 Newsletters* · {_plural(len(lines), 'issue')}"]
    for line in lines[:NEWSLETTER_LINES]:
        if line.finish is None:
            when = ""
        elif line.status in ("scheduled", "sending"):
            when = f" · finishes {_when(line.finish)}"
        else:
            when = f" · {line.status} {_when(line.finish)}"
        out.append(
            f"• {safe(line.newsletter_name, 100)} · {safe(line.title, 100)} · _{line.status}_ · "
            f"{line.sent:,} / {line.planned:,} sent · {line.bounced:,} bounced · "
            f"{line.unsubscribed:,} unsubscribed{when}"
        )
    if len(lines) > NEWSLETTER_LINES:
        out.append(f"…and {len(lines) - NEWSLETTER_LINES:,} more: `GET /api/marketing/newsletters`")
    return "\n".join(out)


def _when(at: datetime) -> str:
    at = at.astimezone(UTC)
    return f"{at:%b} {at.day} ≈{at:%H:%M} UTC"


def _summary(facts: DigestFacts, *, title: str, period: _Period) -> str:
    replies = facts.replies
    waiting = max(facts.waiting_count, len(facts.waiting))
    return (
        f"{escape(title)} — {period.label}: {facts.sent.current:,} sent, "
        f"{_plural(replies.total.current, 'reply', 'replies')} "
        f"({replies.positive.current:,} positive), "
        f"{_plural(facts.meetings.current, 'meeting')} booked, "
        f"{_plural(waiting, 'card')} waiting for approval"
    )


def _quiet(
    facts: DigestFacts, *, title: str, period: _Period, asker: str | None, chart_alt: str
) -> DigestMessage:
    """A period without outreach: one line, with the cards that still wait."""
    line = f"*{safe(title, _NAME)}* · No outreach activity {period.quiet}"
    waiting = max(facts.waiting_count, len(facts.waiting))
    if waiting:
        verb = "waits" if waiting == 1 else "wait"
        line += f" — {_plural(waiting, 'card')} still {verb} for approval"
    if asker:
        line += f" · asked for by {asker}"
    text = f"{escape(title)}: No outreach activity {period.quiet}"
    if waiting:
        text += f" — {_plural(waiting, 'card')} waiting for approval"
    blocks = [_section(line)]
    if facts.reputation is not None:
        blocks.append(_section(reputation_line(facts.reputation)))
    if facts.content is not None:
        blocks.append(_section(content_week(facts.content, str(period.zone))))
    if facts.newsletters:
        blocks.append(_section(newsletter_lines(facts.newsletters)))
    return DigestMessage(text=text, blocks=blocks, chart_alt=chart_alt)


# --- the lists ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """A list of the digest: its heading, its lines, how many the message shows, the heading
    of what the thread shows, and a closing line (said where the list ends)."""

    heading: str
    items: list[str]
    shown: int
    more_heading: str
    footer: str | None = None


def _groups(
    facts: DigestFacts, *, zone: tzinfo, period: _Period, permalinks: Mapping[int, str]
) -> list[_Group]:
    groups: list[_Group] = []
    if facts.hottest:
        groups.append(
            _Group(
                heading="*🔥 Hottest replies* — stale clients who answered warmly",
                items=[_hot_line(h, zone, permalinks) for h in facts.hottest],
                shown=HOTTEST_SHOWN,
                more_heading="*🔥 More warm replies from stale clients*",
            )
        )
    waiting = max(facts.waiting_count, len(facts.waiting))
    if waiting:
        unlisted = waiting - len(facts.waiting)
        heading = f"*⏳ {_plural(waiting, 'card')} waiting for approval*"
        groups.append(
            _Group(
                heading=heading + (" — oldest first" if facts.waiting else ""),
                items=[_waiting_line(c, facts.until, permalinks) for c in facts.waiting],
                shown=LIST_SHOWN,
                more_heading="*⏳ More cards waiting for approval* — oldest first",
                footer=(
                    f"…and {unlisted:,} more not listed: each rep's App Home shows theirs."
                    if unlisted > 0
                    else None
                ),
            )
        )
    if facts.funnels:
        groups.append(
            _Group(
                heading=(
                    f"*📈 Running campaigns* — lifetime; (+n) is what this {period.unit} added"
                ),
                items=[_funnel_line(f) for f in facts.funnels],
                shown=LIST_SHOWN,
                more_heading="*📈 More running campaigns*",
            )
        )
    if facts.revenue:
        groups.append(
            _Group(
                heading="*💰 Ordered again after a reply*",
                items=[_revenue_line(r) for r in facts.revenue],
                shown=LIST_SHOWN,
                more_heading="*💰 More clients who ordered again after a reply*",
            )
        )
    if facts.stale_clients:
        count = len(facts.stale_clients)
        groups.append(
            _Group(
                heading=f"*📞 {_plural(count, 'client')} worth a call this week*",
                items=[_stale_line(c) for c in facts.stale_clients],
                shown=LIST_SHOWN,
                more_heading="*📞 More clients worth a call*",
            )
        )
    return groups


def _hot_line(reply: HotReply, zone: tzinfo, permalinks: Mapping[int, str]) -> str:
    name = safe(reply.contact_name or reply.contact_email, _NAME)
    link = permalinks.get(reply.card_id) if reply.card_id is not None else None
    who = _link(link, name)
    if who == name:  # no card to open: the address to write to
        who = f"{name} ({safe(reply.contact_email, _EMAIL)})"
    client = f" at *{safe(reply.client_name, _NAME)}*" if reply.client_name else ""
    replied = reply.replied_at.astimezone(zone).strftime("%a %H:%M")
    return (
        f"• {who}{client} — {_since_order(reply.days_since_order)} · replied {replied} · "
        f"engagement {reply.engagement_score:.0f}"
    )


def _waiting_line(card: WaitingCard, until: datetime, permalinks: Mapping[int, str]) -> str:
    title = _link(permalinks.get(card.card_id), safe(card.title, _NAME))
    if card.rep_slack_user_id and _SLACK_USER.fullmatch(card.rep_slack_user_id):
        rep = f"<@{card.rep_slack_user_id}>"
    elif card.rep_name:
        rep = safe(card.rep_name, _NAME)
    else:
        rep = "no rep"
    return f"• {title} · {_age(until - card.created_at)} · {rep}"


def _stage(lifetime: int, added: int) -> str:
    return f"{lifetime:,} (+{added:,})" if added > 0 else f"{lifetime:,}"


#: A campaign's funnel, from enrolled to ordered again.
_STAGES: Final[tuple[tuple[str, Callable[[Counts], int]], ...]] = (
    ("enrolled", lambda c: c.enrolled),
    ("sent", lambda c: c.sent),
    ("replied", lambda c: c.replied),
    ("positive", lambda c: c.positive),
    ("meeting", lambda c: c.meetings),
    ("ordered again", lambda c: c.orders_after_reply),
)


def _funnel_line(funnel: CampaignFunnel) -> str:
    life, period = funnel.lifetime, funnel.period
    stages = " → ".join(f"{label} {_stage(count(life), count(period))}" for label, count in _STAGES)
    return f"• *{safe(funnel.campaign_name, _NAME)}*\n      {stages}"


def _revenue_line(signal: RevenueSignal) -> str:
    line = f"• *{safe(signal.client_name, _NAME)}* — {_plural(signal.orders, 'order')}"
    if signal.fees is not None:
        line += f", ${signal.fees:,.2f} in fees"
    if signal.contact_name:
        line += f" (after {safe(signal.contact_name, _NAME)} replied)"
    return line


def _stale_line(client: RankedClient) -> str:
    line = f"• *{safe(client.client_name, _NAME)}* — {_since_order(client.days_since_order)}"
    if client.contact_name and client.contact_email:
        line += f" · {safe(client.contact_name, _NAME)} ({safe(client.contact_email, _EMAIL)})"
    elif client.contact_name or client.contact_email:
        line += f" · {safe(client.contact_name or client.contact_email or '', _EMAIL)}"
    else:
        line += " · no contact on file"
    return line


# --- fitting the lists into Slack's limits ------------------------------------------------


def _pack(lines: Sequence[str], max_blocks: int) -> tuple[list[dict[str, Any]], int]:
    """Lines into at most `max_blocks` sections of at most SECTION_CHARS characters each;
    return the sections and how many of the lines they hold (a prefix)."""
    texts: list[str] = []
    for taken, line in enumerate(lines):
        line = _cut(line, SECTION_CHARS)
        if texts and len(texts[-1]) + 1 + len(line) <= SECTION_CHARS:
            texts[-1] += "\n" + line
        elif len(texts) < max_blocks:
            texts.append(line)
        else:
            return [_section(t) for t in texts], taken
    return [_section(t) for t in texts], len(lines)


# A list that the message could not show whole: its group, the items left, and whether
# its closing line is still to be said.
_Moved = tuple[_Group, list[str], bool]


def _fill(
    blocks: list[dict[str, Any]], groups: Sequence[_Group], *, budget: int
) -> tuple[list[dict[str, Any]], list[_Moved]]:
    """Add each list's first items to the message while blocks remain; return the blocks
    and what is left of each list."""
    out = list(blocks)
    moved: list[_Moved] = []
    for group in groups:
        items = group.items[: group.shown]
        footer_here = group.footer is not None and len(group.items) <= group.shown
        lines = [group.heading, *items, *([group.footer] if footer_here and group.footer else [])]
        packed, taken = _pack(lines, max(0, budget - len(out)))
        shown_items = min(max(taken - 1, 0), len(items))
        if group.items and shown_items == 0:
            packed, taken = [], 0  # a heading over nothing: the thread shows the list
        out += packed
        left = group.items[shown_items:]
        footer_left = group.footer is not None and not (footer_here and taken == len(lines))
        if left or footer_left:
            moved.append((group, left, footer_left))
    return out, moved


def _thread(moved: Sequence[_Moved]) -> tuple[list[dict[str, Any]], int]:
    """The thread's blocks for what the message left out; return them and how many items
    even the thread could not hold."""
    rest: list[dict[str, Any]] = []
    dropped = 0
    budget = MAX_BLOCKS - 1  # the last block may have to count what was dropped
    for group, items, footer_left in moved:
        lines = [
            group.more_heading,
            *items,
            *([group.footer] if footer_left and group.footer else []),
        ]
        packed, taken = _pack(lines, max(0, budget - len(rest)))
        shown_items = min(max(taken - 1, 0), len(items))
        if items and shown_items == 0:
            packed = []
        rest += packed
        dropped += len(items) - shown_items
    return rest, dropped
