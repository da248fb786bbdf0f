"""Block Kit of the content calendar (docs/content-calendar.md): the due-morning card, the
card once someone acted, `/content list`, the `/content add` modal and the Done-with-link
modal.

Pure functions. A content item's text is shown as a code block (the text to copy, as it
is: no mrkdwn of its own, no mentions); titles are escaped with mentions disarmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final

from domain.campaigns import Campaign, Channel
from domain.content import (
    ContentType,
    DueCard,
    ScheduleEntry,
    ScheduleStatus,
    SnoozeChoice,
    channel_label,
    describe_day,
    human_step,
)
from domain.mrkdwn import MENTION_WORDS, escape, safe
from handlers.slack.ids import ActionId, BlockId, CallbackId

#: Characters of the text per section (a section holds 3,000; the fences take a few).
_CHUNK: Final = 2_800
#: Sections the text may take in one message (Slack allows 50 blocks).
_MAX_CHUNKS: Final = 12
_STATUS_ICONS: Final = {
    ScheduleStatus.SCHEDULED: "🗓️",
    ScheduleStatus.DUE: "📣",
    ScheduleStatus.DONE: "✅",
    ScheduleStatus.SNOOZED: "⏰",
    ScheduleStatus.SKIPPED: "⏭️",
}
_SNOOZE_LABELS: Final = {
    SnoozeChoice.TOMORROW: "Snooze to tomorrow morning",
    SnoozeChoice.TWO_DAYS: "Snooze two days",
    SnoozeChoice.NEXT_WEEK: "Snooze to next Monday",
}
_TYPE_LABELS: Final = {
    ContentType.SOCIAL_POST: "social post",
    ContentType.CASE_STUDY: "case study",
}


def type_label(content_type: ContentType) -> str:
    """A content type as people say it."""
    return _TYPE_LABELS.get(content_type, content_type.value)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str, limit: int = 150) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _code(text: str) -> list[dict[str, Any]]:
    """The text to copy as code blocks: fences inside it broken, mentions disarmed."""
    text = MENTION_WORDS.sub("@\u2060", text.replace("```", "`\u200b``")).strip() or "(no text)"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)][:_MAX_CHUNKS]
    return [{"type": "section", "text": _mrkdwn(f"```{chunk}```")} for chunk in chunks]


def _head(entry: ScheduleEntry, time_zone: str) -> list[dict[str, Any]]:
    where = channel_label(entry.channel)
    return [
        {"type": "header", "text": _plain(f"📣 Post this today on {where}")},
        {
            "type": "section",
            "text": _mrkdwn(f"*{safe(entry.title, 300)}* · {type_label(entry.content_type)}"),
        },
        _context(
            f"Scheduled for {describe_day(entry.scheduled_for, time_zone)} ({time_zone}) · "
            f"post #{entry.id}" + (f" · {safe(entry.note, 300)}" if entry.note else "")
        ),
    ]


def _body(body: str, link: str | None, channel: Channel) -> list[dict[str, Any]]:
    blocks = _code(body)
    if link:
        blocks.append({"type": "section", "text": _mrkdwn(f"🔗 {safe(link, 2000)}")})
    blocks.append(_context(f"🙋 {human_step(channel)}"))
    return blocks


def due_card(card: DueCard) -> tuple[str, list[dict[str, Any]]]:
    """The due-morning card: what to post where, the text to copy, Done/Snooze/Skip."""
    entry = card.entry
    value = str(entry.id)
    actions: dict[str, Any] = {
        "type": "actions",
        "block_id": BlockId.CONTENT_ACTIONS,
        "elements": [
            {
                "type": "button",
                "action_id": ActionId.CONTENT_DONE,
                "text": _plain("Done"),
                "style": "primary",
                "value": value,
            },
            {
                "type": "button",
                "action_id": ActionId.CONTENT_DONE_LINK,
                "text": _plain("Done, add the link…"),
                "value": value,
            },
            {
                "type": "button",
                "action_id": ActionId.CONTENT_SNOOZE,
                "text": _plain("Snooze"),
                "value": f"{SnoozeChoice.TOMORROW.value}:{value}",
            },
            {
                "type": "button",
                "action_id": ActionId.CONTENT_SKIP,
                "text": _plain("Skip"),
                "value": value,
            },
            {
                "type": "overflow",
                "action_id": ActionId.CONTENT_SNOOZE_MORE,
                "options": [
                    {"text": _plain(_SNOOZE_LABELS[c]), "value": f"{c.value}:{value}"}
                    for c in (SnoozeChoice.TWO_DAYS, SnoozeChoice.NEXT_WEEK)
                ],
            },
        ],
    }
    text = f"Post this today on {channel_label(entry.channel)}: {entry.title[:150]}"
    blocks = [*_head(entry, card.time_zone), *_body(card.body, card.link, entry.channel), actions]
    return text, blocks


def outcome_line(entry: ScheduleEntry, time_zone: str, actor_slack_id: str | None) -> str:
    """What happened to a post, as its card's last line says it."""
    who = f"<@{actor_slack_id}>" if actor_slack_id else "someone (through the API)"
    at = describe_day(entry.acted_at, time_zone) if entry.acted_at else ""
    if entry.status == ScheduleStatus.DONE:
        # Escaped as Slack asks of a link's address, `|` too: a stored URL cannot end the
        # link early and be read as mrkdwn.
        href = escape(entry.posted_url or "").replace("|", "%7C")
        link = f" · <{href}|the post>" if entry.posted_url else ""
        return f"✅ Posted on {channel_label(entry.channel)} — marked done by {who}, {at}{link}"
    if entry.status == ScheduleStatus.SNOOZED and entry.snoozed_until is not None:
        until = describe_day(entry.snoozed_until, time_zone)
        return f"⏰ Snoozed by {who} until {until}; the card comes again then."
    if entry.status == ScheduleStatus.SKIPPED:
        return f"⏭️ Skipped by {who}, {at}: not posted."
    if entry.status == ScheduleStatus.SCHEDULED:
        return f"🗓️ Moved to {describe_day(entry.scheduled_for, time_zone)}."
    return "📣 Waiting for someone to post it."


def acted_card(
    entry: ScheduleEntry,
    *,
    body: str,
    link: str | None,
    time_zone: str,
    actor_slack_id: str | None,
) -> tuple[str, list[dict[str, Any]]]:
    """The card once someone acted: the same text, its buttons replaced by what happened."""
    line = outcome_line(entry, time_zone, actor_slack_id)
    blocks = [*_head(entry, time_zone), *_body(body, link, entry.channel), _context(line)]
    return f"{entry.title[:150]}: {line}", blocks


def week_message(
    entries: Sequence[ScheduleEntry], *, since: datetime, time_zone: str
) -> tuple[str, list[dict[str, Any]]]:
    """`/content list`: this week's scheduled posts with their channel, day and status."""
    head = f"This week's content (week of {describe_day(since, time_zone).split(',')[0]})"
    if not entries:
        text = f"{head}: nothing scheduled. `/content add` schedules a post."
        return text, [{"type": "section", "text": _mrkdwn(text)}]
    lines = [week_line(e, time_zone) for e in entries]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain(head)}]
    for start in range(0, min(len(lines), 200), 20):
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(lines[start : start + 20]))})
    blocks.append(_context(f"Times in {time_zone} · `/content done &lt;id&gt;` marks a post done"))
    return f"{head}: {len(entries)} scheduled", blocks


def week_line(entry: ScheduleEntry, time_zone: str) -> str:
    """One scheduled post in a list: its id, day, channel, title and status."""
    icon = _STATUS_ICONS[entry.status]
    return (
        f"{icon} `#{entry.id}` {describe_day(entry.scheduled_for, time_zone)} · "
        f"{channel_label(entry.channel)} · {safe(entry.title, 120)} · _{entry.status.value}_"
    )


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": _plain(text, 75), "value": value}


def add_content_modal(
    campaigns: Sequence[Campaign], *, today: date, time_zone: str
) -> dict[str, Any]:
    """The `/content add` form: title, type, text, channel, day and time, campaign."""

    def block(block_id: str, label: str, element: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {
            "type": "input",
            "block_id": block_id,
            "label": _plain(label),
            "element": element,
            **more,
        }

    blocks = [
        block(
            BlockId.CONTENT_TITLE,
            "Title",
            {
                "type": "plain_text_input",
                "action_id": ActionId.CONTENT_TITLE_INPUT,
                "max_length": 300,
            },
        ),
        block(
            BlockId.CONTENT_TYPE,
            "Type",
            {
                "type": "static_select",
                "action_id": ActionId.CONTENT_TYPE_INPUT,
                "options": [_option(type_label(t), t.value) for t in ContentType],
                "initial_option": _option(
                    type_label(ContentType.SOCIAL_POST), ContentType.SOCIAL_POST.value
                ),
            },
        ),
        block(
            BlockId.CONTENT_BODY,
            "The text to post",
            {
                "type": "plain_text_input",
                "action_id": ActionId.CONTENT_BODY_INPUT,
                "multiline": True,
                "max_length": 3000,
            },
        ),
        block(
            BlockId.CONTENT_CHANNEL,
            "Channel",
            {
                "type": "static_select",
                "action_id": ActionId.CONTENT_CHANNEL_INPUT,
                "options": [_option(channel_label(c), c.value) for c in Channel],
            },
        ),
        block(
            BlockId.CONTENT_DATE,
            "Day",
            {
                "type": "datepicker",
                "action_id": ActionId.CONTENT_DATE_INPUT,
                "initial_date": today.isoformat(),
            },
        ),
        block(
            BlockId.CONTENT_TIME,
            f"Time ({time_zone})",
            {
                "type": "timepicker",
                "action_id": ActionId.CONTENT_TIME_INPUT,
                "initial_time": "10:00",
            },
        ),
    ]
    if campaigns:
        blocks.append(
            block(
                BlockId.CONTENT_CAMPAIGN,
                "Campaign (optional)",
                {
                    "type": "static_select",
                    "action_id": ActionId.CONTENT_CAMPAIGN_INPUT,
                    "options": [_option(c.name, str(c.id)) for c in campaigns[:100]],
                },
                optional=True,
            )
        )
    return {
        "type": "modal",
        "callback_id": CallbackId.ADD_CONTENT,
        "title": _plain("Schedule content", 24),
        "submit": _plain("Schedule", 24),
        "close": _plain("Cancel", 24),
        "private_metadata": time_zone,
        "blocks": blocks,
    }


def done_link_modal(entry_id: int, title: str) -> dict[str, Any]:
    """Done with the post's link: one URL field."""
    return {
        "type": "modal",
        "callback_id": CallbackId.CONTENT_DONE_LINK,
        "title": _plain("Mark it done", 24),
        "submit": _plain("Done", 24),
        "close": _plain("Cancel", 24),
        "private_metadata": str(entry_id),
        "blocks": [
            {"type": "section", "text": _mrkdwn(f"*{safe(title, 300)}*")},
            {
                "type": "input",
                "block_id": BlockId.CONTENT_URL,
                "label": _plain("The post's link"),
                "element": {
                    "type": "url_text_input",
                    "action_id": ActionId.CONTENT_URL_INPUT,
                    "placeholder": _plain("https://www.linkedin.com/posts/…"),
                },
            },
        ],
    }
