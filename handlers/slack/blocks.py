"""Block Kit: pure functions from domain views to Slack JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote_plus

from domain.cadence import Channel
from domain.card_details import CardThread, ContactOverview, ThreadMessage
from domain.cards import Card, CardState, CardType, CardView
from domain.contacts import ContactMatch
from domain.engagement import REPLY_EVENTS, EngagementEntry, EngagementEvent
from domain.jobs import STEP_TITLES, Job
from domain.mrkdwn import ESCAPES as _ESCAPES
from domain.mrkdwn import MENTION_WORDS as _MENTION_WORDS
from domain.mrkdwn import escape as escape
from domain.mrkdwn import safe as safe
from domain.reply_policy import ReplyPolicy
from domain.rules import Rule
from handlers.slack.ids import ActionId, BlockId, CallbackId, OverflowChoice
from handlers.slack.reputation_blocks import (
    is_review_card,
    review_card_message,
    review_home_buttons,
)

PREVIEW_CHARS = 600
MODAL_TEXT_CHARS = 2900  # a section's text may hold 3,000 characters
MAX_INPUT_CHARS = 3000  # plain_text_input max_length
RULE_SECTIONS = 40  # a message holds 50 blocks: the rules' sections, a header and a footer
RULE_PATTERN_CHARS = 200  # a longer pattern is shown cut; the API has it whole

_ICONS = {
    CardType.SEND_EMAIL: "✉️",
    CardType.FOLLOW_UP: "✉️",
    CardType.REPLY_TO_EMAIL: "↩️",
    CardType.SCHEDULE_CALL: "📞",
    CardType.RESEARCH: "🔎",
    CardType.CREATE_TASK: "📝",
    CardType.CREATE_DEAL: "💼",
    CardType.NEEDS_HUMAN_RESPONSE: "🙋",
    CardType.LINKEDIN_TOUCH: "🔗",
    CardType.REVIEW_RESPONSE: "⭐",
    CardType.REVIEW_ESCALATION: "🚨",
}


def _text(text: str, *, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": text}


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": _truncate(text, limit), "emoji": True}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _when(at: datetime | None) -> str:
    if at is None:
        return ""
    unix = int(at.timestamp())
    return f" at <!date^{unix}^{{time}}|{at.strftime('%H:%M')} UTC>"


def _who(slack_id: str | None) -> str:
    return f"<@{slack_id}>" if slack_id else "someone"


def button_value(card: Card) -> str:
    """The value a card's buttons carry: the card id and the fingerprint of its draft."""
    return json.dumps({"card": card.id, "fp": card.draft_fingerprint}, separators=(",", ":"))


def parse_button_value(value: str | None) -> tuple[int, str | None]:
    """Read a card id and fingerprint from a button value; raise ValueError if malformed."""
    try:
        data = json.loads(value or "")
        card_id = int(data["card"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError("this button does not name a card") from exc
    fingerprint = data.get("fp")
    return card_id, str(fingerprint) if fingerprint else None


def _headline(view: CardView) -> str:
    card = view.card
    icon = _ICONS.get(card.type, "•")
    parts = []
    if view.step_number and view.total_steps:
        parts.append(f"Step {view.step_number} of {view.total_steps}")
    if view.campaign_name:
        parts.append(escape(view.campaign_name))
    title = " · ".join(parts) or escape(card.title)
    return f"{icon}  *{title}*    `{card.priority.value}`"


def _recipient(view: CardView) -> str:
    who = escape(view.contact_name or "")
    extra = ", ".join(escape(p) for p in (view.contact_title, view.company_name) if p)
    line = f"{who} — {extra}" if extra else who
    if view.contact_email:
        line += f" ({escape(view.contact_email)})"
    return line


def _status_line(view: CardView) -> tuple[str, bool]:
    """The context line that replaces the buttons after an action; True if Retry shows."""
    card = view.card
    actor = _who(view.actor_slack_id)
    edited = bool(card.action_payload.get("edited_by"))
    if card.state == CardState.DONE:
        if card.sends_email:
            verb = "Edited and sent" if edited else "Sent"
            extra = (
                f" · in thread with {view.thread_emails} earlier emails"
                if view.thread_emails
                else ""
            )
            return f"✅ {verb} by {actor}{_when(card.executed_at)}{extra}", False
        return f"✅ Done by {actor}{_when(card.executed_at)}", False
    if card.state == CardState.REJECTED:
        reason = f': "{escape(card.rejected_reason)}"' if card.rejected_reason else ""
        return f"🚫 Rejected by {actor}{reason}", False
    if card.state == CardState.WITHDRAWN:
        reason = escape(card.withdrawn_reason or "its job stopped")
        by = f" by {actor}" if view.actor_slack_id else ""
        return f"🚫 Withdrawn: {reason}{by}", False
    if card.state == CardState.BLOCKED:
        return f"⚠️ Not sent: {escape(card.blocked_reason or 'unknown error')}", True
    if card.state == CardState.EXECUTING and card.blocked_reason:
        return f"⏳ Queued: {escape(card.blocked_reason)}", False
    if card.state in (CardState.APPROVED, CardState.EXECUTING):
        return f"⏳ Sending… approved by {actor}", False
    return "", False


def card_message(view: CardView) -> tuple[str, list[dict[str, Any]]]:
    """Return the fallback text and blocks of a card's message."""
    card = view.card
    if is_review_card(card):
        return review_card_message(view)
    if card.answers_email:
        return reply_card_message(view)
    channel = step_channel(card)
    if channel is not None:
        return step_card_message(view, channel)
    payload = card.action_payload
    blocks: list[dict[str, Any]] = [{"type": "section", "text": _text(_headline(view))}]
    fields = []
    if view.contact_name or view.contact_email:
        fields.append(f"*To*  {_recipient(view)}")
    if card.rationale:
        fields.append(f"*Why*  {escape(card.rationale)}")
    if fields:
        blocks.append({"type": "section", "text": _text("\n".join(fields))})
    if card.sends_email:
        subject = str(payload.get("subject", ""))
        body = str(payload.get("body", ""))
        blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": _text(f"*Subject*  {escape(subject)}")})
        preview = _truncate(body, PREVIEW_CHARS)
        blocks.append({"type": "section", "text": _text(escape(preview) or " ")})
        blocks.append({"type": "divider"})
    elif card.description:
        blocks.append({"type": "section", "text": _text(escape(_truncate(card.description, 2900)))})
    urls = payload.get("portal_urls")
    if isinstance(urls, list) and urls:
        blocks.append(
            {"type": "section", "text": _text("*Portals*  " + " · ".join(map(str, urls)))}
        )
    note = payload.get("draft_note")
    if note:
        blocks.append({"type": "context", "elements": [_text(f"ℹ️ {escape(str(note))}")]})
    routing = payload.get("routing_note")
    if routing:
        blocks.append({"type": "context", "elements": [_text(f"↪️ {routing_words(routing)}")]})
    zone = payload.get("time_zone")
    if card.sends_email and isinstance(zone, str) and zone:
        # A cadence step scheduled by the tick: in which zone, and why that one.
        blocks.append(
            {"type": "context", "elements": [_text(f"🕘 Scheduled in {safe(zone, 200)}")]}
        )
    status, retry = _status_line(view)
    if status:
        elements: list[dict[str, Any]] = [_text(status)]
        blocks.append({"type": "context", "elements": elements})
        if retry:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": BlockId.CARD_ACTIONS,
                    "elements": [_button("Retry now", ActionId.RETRY, card, style="primary")],
                }
            )
    else:
        blocks.append(_actions(card, long_body=len(str(payload.get("body", ""))) > PREVIEW_CHARS))
    title = safe(card.title, 300)
    fallback = f"{title}: {status}" if status else f"{title} — waiting for review"
    return _truncate(fallback, 3000), blocks


# --- a rep's cadence step: a LinkedIn touch, a call, a task (issue 13) -------------------

#: What a rep's step asks, by channel, when the step has no title of its own.
_STEP_VERBS: Final = {
    Channel.LINKEDIN: ("🔗", "Reach {name} on LinkedIn"),
    Channel.CALL: ("📞", "Call {name}"),
    Channel.TASK: ("📝", "Task for {name}"),
}
LINKEDIN_SEARCH: Final = "https://www.linkedin.com/search/results/people/?keywords="


def step_channel(card: Card) -> Channel | None:
    """The channel of a rep's cadence step card (LinkedIn, call, task), else None."""
    payload = card.action_payload
    if card.answers_email or card.sends_email or not isinstance(payload.get("cadence_step"), int):
        return None
    try:
        channel = Channel(str(payload.get("channel")))
    except ValueError:
        return None
    return None if channel == Channel.EMAIL else channel


def linkedin_search_url(name: str, company: str | None) -> str:
    """A LinkedIn people search for a person at a company (no profile URL is stored)."""
    return LINKEDIN_SEARCH + quote_plus(" ".join(p for p in (name, company) if p))


def _own_title(view: CardView, channel: Channel) -> str | None:
    """The step's own title ("Send the Q4 rate sheet"), None for the channel's default."""
    title = view.card.title
    if view.contact_name and title.endswith(f": {view.contact_name}"):
        title = title[: -len(view.contact_name) - 2]
    return None if title == STEP_TITLES.get(channel) else title


def _step_headline(view: CardView, channel: Channel) -> str:
    icon, verb = _STEP_VERBS[channel]
    name = safe(view.contact_name or "the contact", 200)
    at = f" at {safe(view.company_name, 200)}" if view.company_name else ""
    own = _own_title(view, channel)
    if own:
        line = f"{icon}  *{safe(own, 300)}* · {name}{at}"
    else:
        line = f"{icon}  *{verb.format(name=name)}*{at}"
    return f"{line}    `{view.card.priority.value}`"


def _so_far(view: CardView) -> str | None:
    """ "Step 3 of 5 · Q4 lender win-back · after 2 emails, no reply"."""
    parts = []
    if view.step_number and view.total_steps:
        parts.append(f"Step {view.step_number} of {view.total_steps}")
    if view.campaign_name:
        parts.append(safe(view.campaign_name, 200))
    if view.emails_before is not None:
        if view.emails_before == 0:
            emails = "no email yet"
        else:
            plural = "email" if view.emails_before == 1 else "emails"
            emails = f"after {view.emails_before} {plural}"
        parts.append(f"{emails}, {'replied' if view.replied else 'no reply'}")
    return " · ".join(parts) or None


def _step_fields(view: CardView, channel: Channel) -> list[str]:
    card = view.card
    lines = []
    if card.rationale:
        lines.append(f"*Why*  {safe(card.rationale, 500)}")
    so_far = _so_far(view)
    if so_far:
        lines.append(f"*So far*  {so_far}")
    if view.contact_title:
        lines.append(f"*Title*  {safe(view.contact_title, 200)}")
    if view.contact_phone:
        lines.append(f"*Phone*  {safe(view.contact_phone, 40)}")
    elif channel == Channel.CALL:
        lines.append("*Phone*  _none on file: look it up, or skip this step_")
    if view.contact_email:
        lines.append(f"*Email*  {safe(view.contact_email, 320)}")
    if channel == Channel.LINKEDIN and view.contact_name:
        url = linkedin_search_url(view.contact_name, view.company_name)
        who = " at ".join(p for p in (view.contact_name, view.company_name) if p)
        lines.append(f"*LinkedIn*  <{url}|Search LinkedIn for {safe(who, 300)}>")
    return lines


def _step_status(view: CardView) -> str:
    """The line that replaces Done / Skip once the step is decided."""
    card = view.card
    actor = _who(view.actor_slack_id)
    if card.state == CardState.REJECTED:
        reason = card.rejected_reason
        said = f': "{safe(reason, 300)}"' if reason and reason != "skipped" else ""
        return f"⏭️ Skipped by {actor}{said}"
    if card.state in (CardState.APPROVED, CardState.EXECUTING) and not card.blocked_reason:
        return f"⏳ Marked done by {actor}…"
    status, _ = _status_line(view)
    return status


def step_card_message(view: CardView, channel: Channel) -> tuple[str, list[dict[str, Any]]]:
    """The message of a rep's cadence step (a LinkedIn touch, a call, a task): who, why,
    the steps so far, how to reach them, the zone of their times, and Done / Skip."""
    card = view.card
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _text(_step_headline(view, channel))}
    ]
    fields = _step_fields(view, channel)
    if fields:
        blocks.append({"type": "section", "text": _text(_truncate("\n".join(fields), 2900))})
    if card.description:
        blocks.append({"type": "section", "text": _text(safe(card.description, 2900))})
    zone = card.action_payload.get("time_zone")
    if isinstance(zone, str) and zone:
        blocks.append({"type": "context", "elements": [_text(f"🕘 Times in {safe(zone, 200)}")]})
    status = _step_status(view)
    if status:
        blocks.append({"type": "context", "elements": [_text(status)]})
    else:
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.CARD_ACTIONS,
                "elements": _step_buttons(card),
            }
        )
    title = safe(card.title, 300)
    fallback = f"{title}: {status}" if status else f"{title} — waiting for you"
    return _truncate(fallback, 3000), blocks


def _step_buttons(card: Card) -> list[dict[str, Any]]:
    return [
        _button("Done", ActionId.STEP_DONE, card, style="primary"),
        _button("Skip", ActionId.STEP_SKIP, card),
    ]


# --- cards made from an inbound message (issue 12) ---------------------------------------

#: How much of the reply a card shows; "View thread" shows the conversation.
REPLY_PREVIEW_CHARS: Final = 1_500
FIELD_CHARS: Final = 2_000  # a section field holds 2,000 characters
CONTEXT_CHARS: Final = 2_000
MAX_FACTS: Final = 8
MAX_TIMES: Final = 8
MAX_ENTITY_VALUES: Final = 5

_KINDS: Final = {
    CardType.REPLY_TO_EMAIL: "Reply",
    CardType.NEEDS_HUMAN_RESPONSE: "Needs a person",
    CardType.SCHEDULE_CALL: "Meeting request",
    CardType.CREATE_TASK: "Task",
    CardType.CREATE_DEAL: "Deal",
}

_SNOOZE_OPTIONS: Final = (
    (OverflowChoice.SNOOZE_HOUR, "For 1 hour"),
    (OverflowChoice.SNOOZE_TOMORROW, "Until tomorrow 9:00"),
    (OverflowChoice.SNOOZE_NEXT_WEEK, "Until next week (Mon 9:00)"),
)
_MORE_OPTIONS: Final = (
    (OverflowChoice.VIEW_THREAD, "View thread"),
    (OverflowChoice.OPEN_CONTACT, "Open contact"),
    (OverflowChoice.RELABEL, "Re-label…"),
)


def menu_value(choice: OverflowChoice, card_id: int) -> str:
    """The value of a card menu's option: `<choice>:<card id>`."""
    return f"{choice.value}:{card_id}"


def parse_menu_value(value: str | None) -> tuple[OverflowChoice, int]:
    """Read a card menu option's choice and card id; raise ValueError if malformed."""
    choice, _, card = (value or "").partition(":")
    try:
        return OverflowChoice(choice), int(card)
    except ValueError as exc:
        raise ValueError("this menu option does not name a card") from exc


def _date(at: datetime, *, style: str = "{date_short_pretty} {time}") -> str:
    """A time Slack shows in the reader's own time zone (UTC in the fallback)."""
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{style}|{fallback}>"


def _iso(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _texts(value: object) -> list[str]:
    """The non-empty strings of a payload list (anything else is ignored)."""
    if not isinstance(value, list):
        return []
    return [str(v) for v in value if isinstance(v, str | int | float) and str(v).strip()]


def _sender(view: CardView) -> str:
    payload = view.card.action_payload
    name = str(payload.get("from_name") or view.contact_name or "")
    email = str(payload.get("from_email") or view.contact_email or "")
    if name and email and name != email:
        return f"{safe(name, 200)} ({safe(email, 320)})"
    return safe(name or email or "an unknown sender", 320)


def _reply_headline(view: CardView) -> str:
    card = view.card
    payload = card.action_payload
    icon = _ICONS.get(card.type, "•")
    kind = _KINDS.get(card.type, "Card")
    who = str(payload.get("from_name") or view.contact_name or payload.get("from_email") or "")
    line = f"{icon}  *{kind}* from *{safe(who, 200)}*" if who else f"{icon}  *{kind}*"
    return f"{line}    `{card.priority.value}`"


def _who_fields(view: CardView) -> list[str]:
    payload = view.card.action_payload
    fields = [f"*From*\n{_sender(view)}"]
    works = ", ".join(safe(p, 300) for p in (view.contact_title, view.company_name) if p)
    if works:
        fields.append(f"*Contact*\n{works}")
    if payload.get("client_history"):
        fields.append(f"*Client*\n{safe(str(payload['client_history']), 500)}")
    # Only a card answering a campaign's email names one (an inbox card's job is no campaign).
    campaign = str(
        payload.get("campaign_name")
        or (view.campaign_name if payload.get("campaign_id") else "")
        or ""
    )
    step = payload.get("step")
    if campaign or isinstance(step, int):
        where = safe(campaign, 300) if campaign else "a campaign"
        if isinstance(step, int):
            where += f" · step {step + 1}"
            if isinstance(payload.get("total_steps"), int):
                where += f" of {payload['total_steps']}"
        fields.append(f"*Answers*\n{where}")
    category = str(payload.get("category") or "")
    if category:
        parts = [f"`{safe(category, 40)}`"]
        for key in ("intent", "sentiment"):
            value = str(payload.get(key) or "")
            if value and value != "none":
                parts.append(safe(value.replace("_", " "), 40))
        confidence = payload.get("confidence")
        if isinstance(confidence, int | float):
            parts.append(f"{float(confidence):.0%} sure")
        fields.append("*Classified*\n" + " · ".join(parts))
    if view.card.rationale:
        fields.append(f"*Why*\n{safe(view.card.rationale, 500)}")
    return [_truncate(f, FIELD_CHARS) for f in fields[:10]]


def _entity_fields(card: Card) -> list[str]:
    """The facts pulled out of the message: an order's number, address, fee and due date."""
    entities = card.action_payload.get("entities")
    if not isinstance(entities, dict):
        return []
    order = card.action_payload.get("category") == "AMC_ORDER"
    labels = (
        ("order_numbers", "Order"),
        ("property_addresses", "Property"),
        ("amounts", "Fee" if order else "Amounts"),
        ("dates", "Due" if order else "Dates"),
    )
    fields = []
    for key, label in labels:
        values = _texts(entities.get(key))[:MAX_ENTITY_VALUES]
        if values:
            fields.append(f"*{label}*\n" + "\n".join(safe(v, 300) for v in values))
    urgency = entities.get("urgency")
    if isinstance(urgency, str) and urgency.strip():
        fields.append(f"*Urgency*\n{safe(urgency, 40)}")
    return fields


def _quoted(text: str) -> str:
    """Text as a mrkdwn quote, line by line (escaped, cut to fit a section)."""
    clipped = safe(text, REPLY_PREVIEW_CHARS)
    return "\n".join(f">{line}" if line.strip() else ">" for line in clipped.splitlines())


def _their_reply(card: Card) -> list[dict[str, Any]]:
    payload = card.action_payload
    text = str(payload.get("reply_text") or card.description or "").strip()
    if payload.get("body"):
        header = "*Their reply*"  # `subject` is our answer's now: the draft's section shows it
    else:
        subject = str(payload.get("subject") or "")
        header = "*Their message*" + (f" · _{safe(subject, 300)}_" if subject else "")
    body = _quoted(text) if text else "_(no text: the message may be only an attachment)_"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _text(_truncate(f"{header}\n{body}", 3000))}
    ]
    cut = len(escape(text)) > REPLY_PREVIEW_CHARS or bool(payload.get("reply_text_truncated"))
    if cut:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    _text("✂️ Cut here: *View thread* in the ⋯ menu shows the whole message.")
                ],
            }
        )
    return blocks


def _injection_warning() -> dict[str, Any]:
    return {
        "type": "section",
        "text": _text(
            "⚠️ *This message tried to give instructions to an AI.* Nothing it asked for "
            "was done. Read it yourself before you answer or click a link in it."
        ),
    }


def _proposed_times(payload: dict[str, Any]) -> dict[str, Any] | None:
    times = payload.get("proposed_times")
    if not isinstance(times, list) or not times:
        return None
    lines = []
    for item in times[:MAX_TIMES]:
        if not isinstance(item, dict):
            continue
        words = safe(str(item.get("words") or ""), 200)
        start, end = _iso(item.get("start")), _iso(item.get("end"))
        when = _date(start) if start else ""
        if start and end:
            when += f" – {_date(end, style='{time}')}"
        line = f"• {when}" if when else "• "
        if words:
            line += f" — “{words}”" if when else f"“{words}”"
        lines.append(line)
    if not lines:
        return None
    return {
        "type": "section",
        "text": _text(_truncate("*Proposed times*\n" + "\n".join(lines), 3000)),
    }


def referral_offer(card: Card) -> str | None:
    """The "Enroll <name> in <campaign>" button's text when the card offers it (a referral
    not enrolled yet), else None. A referral written without an address offers "Add
    <name>'s email & enroll": the click opens the form that asks for it."""
    referral = card.action_payload.get("referral")
    if not isinstance(referral, dict) or referral.get("enrolled_job_id") is not None:
        return None
    if not referral.get("email"):
        named = str(referral.get("name") or "").strip()
        return f"Add {named}'s email & enroll" if named else "Add their email & enroll"
    name = str(referral.get("name") or referral.get("email"))
    campaign = str(referral.get("campaign_name") or card.action_payload.get("campaign_name") or "")
    return f"Enroll {name} in {campaign}" if campaign else f"Enroll {name}"


def _referral(card: Card) -> dict[str, Any] | None:
    referral = card.action_payload.get("referral")
    if not isinstance(referral, dict):
        return None
    name = str(referral.get("name") or "")
    email = str(referral.get("email") or "")
    who = safe(name or email or "someone", 200)
    if name and email:
        who += f" ({safe(email, 320)})"
    elif not email:
        who += " · _no email address given_"
    if referral.get("role"):
        who += f", {safe(str(referral['role']), 100)}"
    line = f"👉 *Referral*  {who}"
    if referral.get("words"):
        line += f"\n“{safe(str(referral['words']), 500)}”"
    if referral.get("enrolled_job_id") is not None:
        campaign = safe(str(referral.get("campaign_name") or "the campaign"), 200)
        line += f"\n✅ Enrolled in {campaign} (job #{int(referral['enrolled_job_id'])})"
    return {"type": "section", "text": _text(_truncate(line, 3000))}


def _draft(card: Card) -> list[dict[str, Any]]:
    payload = card.action_payload
    body = str(payload.get("body") or "")
    if not body.strip():
        return []
    subject = str(payload.get("subject") or "")
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        {"type": "section", "text": _text(f"*Our answer* · _{safe(subject, 300)}_")},
        {"type": "section", "text": _text(safe(body, PREVIEW_CHARS) or " ")},
    ]
    notes = []
    facts = _texts(payload.get("facts_used"))
    if facts:
        shown = "\n".join(f"• {safe(f, 300)}" for f in facts[:MAX_FACTS])
        more = f"\n… and {len(facts) - MAX_FACTS} more" if len(facts) > MAX_FACTS else ""
        notes.append(f"*Facts used*\n{shown}{more}")
    if payload.get("draft_source") == "template":
        note = str(payload.get("draft_note") or "").strip()
        notes.append(
            f"📝 Drafted from a template: {safe(note, 500)}"
            if note
            else "📝 Drafted from a template"
        )
    elif payload.get("draft_note"):
        notes.append(f"ℹ️ {safe(str(payload['draft_note']), 500)}")
    for note in notes:
        blocks.append({"type": "context", "elements": [_text(_truncate(note, CONTEXT_CHARS))]})
    return blocks


def _context_lines(card: Card) -> list[dict[str, Any]]:
    payload = card.action_payload
    lines = []
    paused = _iso(payload.get("paused_until"))
    if paused is not None:
        words = str(payload.get("pause_words") or "")
        said = f" (“{safe(words, 200)}”)" if words else ""
        until = _date(paused, style="{date_long}")
        lines.append(f"⏸ Paused until {until}{said}: no campaign email reaches them before.")
    auto = str(payload.get("auto_reason") or "")
    # Only when no person sent it: a failed auto-send that a rep retried says "sent by".
    if card.state == CardState.DONE and auto.startswith("auto-sent") and card.approved_by is None:
        lines.append(f"🤖 {safe(auto, 500)}")
    if payload.get("relabel_note"):
        lines.append(f"🏷️ {safe(str(payload['relabel_note']), 500)}")
    if payload.get("routing_note"):
        lines.append(f"📍 {routing_words(str(payload['routing_note']))}")
    return [
        {"type": "context", "elements": [_text(_truncate(line, CONTEXT_CHARS))]} for line in lines
    ]


def _options(choices: Iterable[tuple[OverflowChoice, str]], card_id: int) -> list[dict[str, Any]]:
    return [
        {"text": _plain(label), "value": menu_value(choice, card_id)} for choice, label in choices
    ]


def _reply_actions(view: CardView) -> dict[str, Any]:
    card = view.card
    payload = card.action_payload
    elements = [_button(_approve_label(card), ActionId.APPROVE, card, style="primary")]
    if card.sends_email:
        elements.append(_button("Edit", ActionId.EDIT, card))
    elements.append(_button("Reject", ActionId.REJECT, card, style="danger"))
    if card.sends_email and len(str(payload.get("body", ""))) > PREVIEW_CHARS:
        elements.append(_button("View full", ActionId.VIEW_FULL, card))
    offer = referral_offer(card)
    if offer:
        elements.append(_button(offer, ActionId.ENROLL_REFERRAL, card))
    # An overflow holds five options at most: snoozing is its own menu.
    elements.append(
        {
            "type": "static_select",
            "action_id": ActionId.CARD_SNOOZE.value,
            "placeholder": _plain("💤 Snooze"),
            "options": _options(_SNOOZE_OPTIONS, card.id),
        }
    )
    elements.append(
        {
            "type": "overflow",
            "action_id": ActionId.CARD_MORE.value,
            "options": _options(_MORE_OPTIONS, card.id),
        }
    )
    return {"type": "actions", "block_id": BlockId.CARD_ACTIONS, "elements": elements}


def _reply_status(view: CardView) -> tuple[str, bool]:
    card = view.card
    auto = str(card.action_payload.get("auto_reason") or "").startswith("auto-sent")
    if card.state == CardState.DONE and auto and card.approved_by is None:
        return f"✅ Auto-sent{_when(card.executed_at)}", False
    if card.state == CardState.DONE and card.type == CardType.REPLY_TO_EMAIL:
        return f"✅ Reply sent by {_who(view.actor_slack_id)}{_when(card.executed_at)}", False
    return _status_line(view)


def snoozed_line(view: CardView) -> str:
    """ "💤 Snoozed until <time> by @rep", the time in the reader's time zone."""
    card = view.card
    until = _date(card.snoozed_until) if card.snoozed_until else "later"
    by = f" by <@{view.snoozed_by_slack_id}>" if view.snoozed_by_slack_id else ""
    return f"💤 Snoozed until {until}{by}"


def reply_card_message(view: CardView) -> tuple[str, list[dict[str, Any]]]:
    """The message of a card made from an inbound message: who wrote and what, what the
    classifier made of it, the drafted answer and the facts it used, and what to do."""
    card = view.card
    payload = card.action_payload
    title = safe(card.title, 300)
    headline = {"type": "section", "text": _text(_reply_headline(view))}
    if card.is_snoozed:
        line = snoozed_line(view)
        return _truncate(f"{title}: snoozed", 3000), [
            headline,
            {"type": "section", "text": _text(f"*From*  {_sender(view)}")},
            {"type": "context", "elements": [_text(line)]},
            {
                "type": "actions",
                "block_id": BlockId.CARD_ACTIONS,
                "elements": [_button("Unsnooze", ActionId.UNSNOOZE, card)],
            },
        ]
    blocks: list[dict[str, Any]] = [headline]
    if payload.get("injection_attempt"):
        blocks.append(_injection_warning())
    entities = _entity_fields(card)
    order = payload.get("category") == "AMC_ORDER"
    if entities and order:  # an order's facts come first: they are the work
        blocks.append({"type": "section", "fields": [_text(f) for f in entities[:10]]})
    blocks.append({"type": "section", "fields": [_text(f) for f in _who_fields(view)]})
    if entities and not order:
        blocks.append({"type": "section", "fields": [_text(f) for f in entities[:10]]})
    blocks += _their_reply(card)
    for extra in (_proposed_times(payload), _referral(card)):
        if extra is not None:
            blocks.append(extra)
    blocks += _draft(card)
    blocks += _context_lines(card)
    status, retry = _reply_status(view)
    if status:
        blocks.append({"type": "context", "elements": [_text(status)]})
        if retry:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": BlockId.CARD_ACTIONS,
                    "elements": [_button("Retry now", ActionId.RETRY, card, style="primary")],
                }
            )
    else:
        blocks.append(_reply_actions(view))
    fallback = f"{title}: {status}" if status else f"{title} — waiting for you"
    return _truncate(fallback, 3000), blocks[:50]


def _button(
    text: str,
    action: ActionId,
    card: Card,
    *,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text),
        "action_id": action.value,
        "value": button_value(card),
    }
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _actions(card: Card, *, long_body: bool) -> dict[str, Any]:
    approve = "Approve & send" if card.sends_email else "Mark done"
    elements = [_button(approve, ActionId.APPROVE, card, style="primary")]
    if card.sends_email:
        elements.append(_button("Edit", ActionId.EDIT, card))
    elements.append(_button("Reject", ActionId.REJECT, card, style="danger"))
    if card.sends_email and long_body:
        elements.append(_button("View full", ActionId.VIEW_FULL, card))
    return {"type": "actions", "block_id": BlockId.CARD_ACTIONS, "elements": elements}


def edit_modal(card: Card, *, error: str | None = None) -> dict[str, Any]:
    """The modal that edits an email card's subject and body."""
    payload = card.action_payload
    blocks: list[dict[str, Any]] = []
    if error:
        blocks.append({"type": "context", "elements": [_text(f"⚠️ {escape(error)}")]})
    blocks += [
        {
            "type": "input",
            "block_id": BlockId.SUBJECT,
            "label": _plain("Subject"),
            "element": {
                "type": "plain_text_input",
                "action_id": ActionId.SUBJECT_INPUT,
                "initial_value": _truncate(str(payload.get("subject", "")), 150),
                "max_length": 150,
            },
        },
        {
            "type": "input",
            "block_id": BlockId.BODY,
            "label": _plain("Body"),
            "hint": _plain(
                "You can use {{ first_name }}, {{ company_name }} and other template variables.",
                150,
            ),
            "element": {
                "type": "plain_text_input",
                "action_id": ActionId.BODY_INPUT,
                "multiline": True,
                "initial_value": _truncate(str(payload.get("body", "")), MAX_INPUT_CHARS),
                "max_length": MAX_INPUT_CHARS,
            },
        },
        {
            "type": "input",
            "block_id": BlockId.OPTIONS,
            "optional": True,
            "label": _plain("After saving"),
            "element": {
                "type": "checkboxes",
                "action_id": ActionId.APPROVE_AFTER_EDIT,
                "options": [{"text": _plain("Approve and send it now"), "value": "approve"}],
            },
        },
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.EDIT_CARD,
        "private_metadata": button_value(card),
        "title": _plain("Edit email", 24),
        "submit": _plain("Save", 24),
        "close": _plain("Cancel", 24),
        "blocks": blocks,
    }


def reject_modal(card: Card) -> dict[str, Any]:
    """The modal that asks for an optional rejection reason."""
    return {
        "type": "modal",
        "callback_id": CallbackId.REJECT_CARD,
        "private_metadata": button_value(card),
        "title": _plain("Reject card", 24),
        "submit": _plain("Reject", 24),
        "close": _plain("Cancel", 24),
        "blocks": [
            {"type": "section", "text": _text(f"Reject *{escape(card.title)}*?")},
            {
                "type": "input",
                "block_id": BlockId.REASON,
                "optional": True,
                "label": _plain("Reason (optional)"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ActionId.REASON_INPUT,
                    "max_length": 500,
                    "placeholder": _plain("e.g. wrong contact"),
                },
            },
        ],
    }


def full_body_modal(card: Card) -> dict[str, Any]:
    """A read-only modal with the whole draft, split into sections."""
    body = str(card.action_payload.get("body", ""))
    chunks = [body[i : i + MODAL_TEXT_CHARS] for i in range(0, len(body), MODAL_TEXT_CHARS)] or [
        " "
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": _text(f"*Subject*  {escape(str(card.action_payload.get('subject', '')))}"),
        },
        {"type": "divider"},
    ]
    blocks += [{"type": "section", "text": _text(escape(chunk))} for chunk in chunks[:95]]
    return {
        "type": "modal",
        "callback_id": CallbackId.FULL_CARD,
        "title": _plain("Full draft", 24),
        "close": _plain("Close", 24),
        "blocks": blocks,
    }


def loading_modal(title: str, *, callback_id: CallbackId, external_id: str) -> dict[str, Any]:
    """A modal opened at once, while the trigger id is fresh, and filled in after."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "external_id": external_id,
        "title": _plain(title, 24),
        "close": _plain("Close", 24),
        "blocks": [{"type": "section", "text": _text("⏳ Loading…")}],
    }


def notice_modal(title: str, text: str, *, callback_id: CallbackId) -> dict[str, Any]:
    """A modal that says one thing (what went wrong, and what to do)."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title, 24),
        "close": _plain("Close", 24),
        "blocks": [{"type": "section", "text": _text(_truncate(text, MODAL_TEXT_CHARS))}],
    }


_SLACK_REFERENCE = re.compile(r"&lt;([#@][CDGUW][A-Z0-9]{2,20})&gt;")


def routing_words(note: str) -> str:
    """A routing note (domain/reply_routing.py) for mrkdwn: escaped like anything stored
    on a card, except the channel and rep it names (`<#C…>`, `<@U…>`), which Slack links."""
    return _SLACK_REFERENCE.sub(r"<\1>", safe(note, 500))


def safe_chunks(text: str, size: int = MODAL_TEXT_CHARS) -> list[str]:
    """Text from outside, escaped as `safe` does, in pieces of at most `size` characters
    (for a long message over several sections; no escape is ever split)."""
    text = _MENTION_WORDS.sub("@\u2060", text)
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for char in text:
        piece = _ESCAPES.get(char, char)
        if used + len(piece) > size:
            chunks.append("".join(current))
            current, used = [], 0
        current.append(piece)
        used += len(piece)
    if current:
        chunks.append("".join(current))
    return chunks


def _thread_message_blocks(message: ThreadMessage, subject: str | None) -> list[dict[str, Any]]:
    who = "*Us*" if message.direction == "us" else "*Them*"
    if message.address:
        to = "to " if message.direction == "us" else ""
        who += f" · {to}{safe(message.address, 320)}"
    if message.at is not None:
        who += f" · {_date(message.at)}"
    if message.answered:
        who += " · _the message this card answers_"
    if message.subject and message.subject != subject:
        who += f"\n_{safe(message.subject, 300)}_"
    sections = safe_chunks(message.text) or ["_(no text)_"]
    if message.truncated:
        sections[-1] = _truncate(sections[-1], MODAL_TEXT_CHARS - 10) + "\n_(cut)_"
    return [
        {"type": "context", "elements": [_text(_truncate(who, CONTEXT_CHARS))]},
        *({"type": "section", "text": _text(part)} for part in sections),
        {"type": "divider"},
    ]


def thread_modal(thread: CardThread) -> dict[str, Any]:
    """ "View thread": the conversation in the card's Gmail thread, oldest first, each
    message without its quoted history and cut; the oldest messages give way when a modal's
    100 blocks cannot hold them all."""
    per_message: list[list[dict[str, Any]]] = []
    subject = None
    for message in thread.messages:
        per_message.append(_thread_message_blocks(message, subject))
        subject = message.subject or subject
    budget = 99  # one block is kept for the line that counts the messages left out
    kept: list[list[dict[str, Any]]] = []
    for blocks in reversed(per_message):
        if len(blocks) > budget:
            break
        kept.insert(0, blocks)
        budget -= len(blocks)
    left_out = thread.left_out + len(per_message) - len(kept)
    shown: list[dict[str, Any]] = []
    if left_out:
        earlier = "message is" if left_out == 1 else "messages are"
        shown.append(
            {"type": "context", "elements": [_text(f"{left_out} earlier {earlier} not shown.")]}
        )
    if not thread.messages:
        shown.append({"type": "section", "text": _text("No message of this thread is stored yet.")})
    for blocks in kept:
        shown += blocks
    return {
        "type": "modal",
        "callback_id": CallbackId.THREAD,
        "title": _plain("Thread", 24),
        "close": _plain("Close", 24),
        "blocks": shown,
    }


_EVENT_LABELS: Final = {
    EngagementEvent.SENT: "📤 Sent",
    EngagementEvent.REPLIED: "💬 Replied",
    EngagementEvent.POSITIVE_REPLY: "👍 Positive reply",
    EngagementEvent.NEGATIVE_REPLY: "👎 Negative reply",
    EngagementEvent.MEETING_REQUEST: "📅 Asked to meet",
    EngagementEvent.ORDER_AFTER_REPLY: "🧾 Ordered after a reply",
    EngagementEvent.BOUNCED: "⛔ Bounced",
    EngagementEvent.SOFT_BOUNCE: "↪️ Soft bounce",
    EngagementEvent.OPTED_OUT: "🚫 Opted out",
    EngagementEvent.COMPLAINT: "🚩 Marked as spam",
    EngagementEvent.OUT_OF_OFFICE: "🏖️ Out of office",
    EngagementEvent.LINKEDIN_TOUCH: "🔗 LinkedIn touch",
    EngagementEvent.CALL: "📞 Called",
}
_TRENDS: Final = {"rising": "↗ rising", "falling": "↘ falling", "steady": "→ steady"}


def _contact_status(contact: ContactOverview) -> str:
    if contact.opted_out_at is not None:
        return f"🚫 Opted out {_date(contact.opted_out_at, style='{date_short_pretty}')}"
    if contact.email_status != "valid":
        return f"⛔ Address {safe(contact.email_status, 40)}: no email reaches them"
    if contact.paused_until is not None:
        why = f" ({safe(contact.pause_reason, 64)})" if contact.pause_reason else ""
        return f"⏸ Paused until {_date(contact.paused_until, style='{date_long}')}{why}"
    return "✅ Reachable"


def _sections(lines: Sequence[str], *, limit: int) -> list[dict[str, Any]]:
    """Lines packed into at most `limit` sections of at most MODAL_TEXT_CHARS each."""
    packed: list[list[str]] = [[]]
    for line in lines:
        if packed[-1] and len("\n".join([*packed[-1], line])) > MODAL_TEXT_CHARS:
            if len(packed) == limit:
                break
            packed.append([])
        packed[-1].append(_truncate(line, MODAL_TEXT_CHARS))
    return [{"type": "section", "text": _text("\n".join(p))} for p in packed if p]


def _timeline_line(entry: EngagementEntry, *, sentiment: bool = False) -> str:
    """An event of a contact's timeline: when, what, the email it names, the score after;
    with `sentiment`, a reply's sentiment where its label does not say it."""
    label = _EVENT_LABELS.get(entry.event, safe(entry.event.value, 40))
    if sentiment and entry.event in REPLY_EVENTS and entry.sentiment:
        if entry.sentiment.lower() not in label.lower():
            label += f" ({safe(entry.sentiment, 16)})"
    line = f"{_date(entry.occurred_at, style='{date_short_pretty}')} · {label}"
    # A reply names their message; a send (or a bounce of it) names our email.
    if entry.inbound_email is not None:
        if entry.inbound_email.subject:
            line += f" · _{safe(entry.inbound_email.subject, 200)}_"
    elif entry.send is not None:
        line += f" · _{safe(entry.send.subject, 200)}_"
        if entry.send.campaign_name:
            step = f" step {entry.send.step + 1}" if entry.send.step is not None else ""
            line += f" ({safe(entry.send.campaign_name, 200)}{step})"
    if entry.score_after is not None:
        line += f" · score {entry.score_after:.0f}"
    return line


def contact_modal(contact: ContactOverview) -> dict[str, Any]:
    """ "Open contact": who they are, their engagement score and trend, whether they can be
    reached, the campaigns they are in and their latest engagement events."""
    history = contact.history
    works = ", ".join(safe(p, 300) for p in (contact.title, contact.company_name) if p)
    who = f"*{safe(contact.name, 200)}*" + (f" · {works}" if works else "")
    who += f"\n{safe(contact.email, 320)}"
    trend = _TRENDS.get(history.trend.value, "trend unknown")
    fields = [
        f"*Engagement*\n{history.score:.0f}/100 · {trend}",
        f"*Status*\n{_contact_status(contact)}",
    ]
    if history.last_replied_at is not None:
        fields.append(f"*Last reply*\n{_date(history.last_replied_at)}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _text(who)},
        {"type": "section", "fields": [_text(f) for f in fields]},
        {"type": "divider"},
    ]
    enrolled = []
    for e in contact.enrollments:
        name = safe(e.campaign_name or e.job_name, 200)
        line = f"• *{name}* (job #{e.job_id}) · next step {e.step + 1} · {safe(e.status, 16)}"
        if e.status == "paused" and e.paused_until is not None:
            line += f" until {_date(e.paused_until, style='{date_short_pretty}')}"
        elif e.next_due_at is not None:
            line += f" · next email {_date(e.next_due_at)}"
        enrolled.append(line)
    blocks.append(
        {
            "type": "section",
            "text": _text(
                _truncate("*Open enrollments*\n" + "\n".join(enrolled), MODAL_TEXT_CHARS)
                if enrolled
                else "*Open enrollments*\nNone: no campaign will email them."
            ),
        }
    )
    blocks.append({"type": "divider"})
    shown = len(history.entries)
    heading = "*Timeline*"
    if contact.earlier_events:
        heading += f" · the latest {shown} of {shown + contact.earlier_events} events"
    lines = [heading]
    # Newest first: what happened last matters most.
    lines += [_timeline_line(entry) for entry in reversed(history.entries)]
    if not history.entries:
        lines.append("Nothing yet.")
    blocks += _sections(lines, limit=100 - len(blocks))
    return {
        "type": "modal",
        "callback_id": CallbackId.CONTACT,
        "title": _plain("Contact", 24),
        "close": _plain("Close", 24),
        "blocks": blocks[:100],
    }


def _approve_label(card: Card) -> str:
    if card.sends_email and card.answers_inbound:  # a reply, a meeting's confirmation
        return "Send reply"
    return "Approve & send" if card.sends_email else "Mark done"


def _home_card(view: CardView) -> list[dict[str, Any]]:
    """A card in the App Home: a line or two and its buttons (Unsnooze when snoozed)."""
    card = view.card
    payload = card.action_payload
    line = f"{_ICONS.get(card.type, '•')} *{safe(card.title, 300)}*"
    if card.is_snoozed:
        line = f"💤 {line}\n{snoozed_line(view)}"
        buttons = [_button("Unsnooze", ActionId.UNSNOOZE, card)]
    else:
        if card.state == CardState.BLOCKED:
            line += f"\n⚠️ {escape(card.blocked_reason or 'blocked')}"
        elif card.answers_email:
            if payload.get("injection_attempt"):
                line += "\n⚠️ _This message tried to give instructions to an AI._"
            text = " ".join(str(payload.get("reply_text") or card.description or "").split())
            if text:
                line += f"\n>{safe(text, 200)}"
        elif payload.get("subject"):
            line += f"\n_{escape(str(payload['subject']))}_"
        buttons = [
            _button(_approve_label(card), ActionId.APPROVE, card, style="primary"),
            _button("Reject", ActionId.REJECT, card, style="danger"),
        ]
        if step_channel(card) is not None:
            buttons = _step_buttons(card)
        if is_review_card(card):
            buttons = review_home_buttons(card)
        if card.state == CardState.SUGGESTED and card.awaits_draft:
            # Nothing to send yet: the draft_reply task has not written the answer.
            line += "\n✍️ _Drafting the answer…_"
            buttons = [_button("Reject", ActionId.REJECT, card, style="danger")]
    return [
        {"type": "section", "text": _text(_truncate(line, 2900))},
        {"type": "actions", "elements": buttons},
    ]


def home_view(
    cards: Sequence[CardView],
    *,
    pending_total: int,
    gmail_email: str | None,
    connect_url: str | None,
) -> dict[str, Any]:
    """The App Home tab: Gmail connection and the rep's pending cards."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain("Salesbot", 150)},
    ]
    if gmail_email:
        blocks.append(
            {"type": "section", "text": _text(f"📬 Sending from *{escape(gmail_email)}*")}
        )
    elif connect_url:
        blocks.append(
            {
                "type": "section",
                "text": _text(
                    "📭 Connect your Gmail so approved emails go out from your own mailbox."
                ),
                "accessory": {
                    "type": "button",
                    "text": _plain("Connect Gmail"),
                    "action_id": ActionId.CONNECT_GMAIL,
                    "url": connect_url,
                    "style": "primary",
                },
            }
        )
    blocks.append({"type": "divider"})
    if not cards:
        blocks.append({"type": "section", "text": _text("🎉 No cards are waiting for you.")})
    else:
        shown = (
            f"{len(cards)} of {pending_total}" if pending_total > len(cards) else str(pending_total)
        )
        blocks.append({"type": "section", "text": _text(f"*Waiting for you* ({shown})")})
        for view in cards:
            blocks += _home_card(view)
        blocks = blocks[:100]
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": _plain("Refresh"), "action_id": ActionId.REFRESH_HOME}
            ],
        }
    )
    return {"type": "home", "blocks": blocks[:100]}


def job_line(job: Job) -> str:
    """A job for `/job list`, `/job status` and `/campaign status`: its status and counts,
    and the latest failure under it when there is one."""
    errors = job.errors_count
    line = (
        f"*#{job.id}* {escape(job.name)} — `{job.status.value}` · "
        f"{job.cards_created} cards, {job.cards_approved} approved, {job.emails_sent} sent"
        + (f", {errors} error{'s' if errors != 1 else ''}" if errors else "")
    )
    if job.last_error:
        line += f"\n      ⚠️ {escape(_truncate(job.last_error, 300))}"
    return line


def bulk_message(
    *, job_name: str, batch: int, cards: Sequence[Card], value: str
) -> tuple[str, list[dict[str, Any]]]:
    """One message for a batch of cards with an 'Approve all N' button behind a confirm."""
    count = len(cards)
    lines = [
        f"• {escape(c.title)} — _{escape(str(c.action_payload.get('subject', '')))}_"
        for c in cards[:40]
    ]
    if count > 40:
        lines.append(f"… and {count - 40} more")
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": _text(f"*{escape(job_name)}* · batch {batch + 1}: {count} drafts"),
        },
        {"type": "section", "text": _text(_truncate("\n".join(lines), 2900))},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": _plain(f"Approve all {count}"),
                    "action_id": ActionId.APPROVE_ALL,
                    "style": "primary",
                    "value": value,
                    "confirm": {
                        "title": _plain("Send them all?", 100),
                        "text": _text(f"This sends {count} emails from your mailbox."),
                        "confirm": _plain("Approve all"),
                        "deny": _plain("Cancel"),
                    },
                }
            ],
        },
    ]
    return f"{job_name}: {count} drafts waiting for approval", blocks


def rule_line(rule: Rule) -> str:
    """A rule for `/rules list` and the answers to `/rules add|remove`."""
    # A backtick would end the code span early; Slack has no escape for it.
    pattern = escape(_truncate(rule.pattern, RULE_PATTERN_CHARS)).replace("`", "ˋ")
    inactive = " · _inactive_" if not rule.is_active else ""
    return (
        f"`#{rule.id}` · priority {rule.priority} · {rule.rule_type.value} `{pattern}` "
        f"→ *{rule.category.value}*{inactive}"
    )


def rules_message(rules: Sequence[Rule]) -> tuple[str, list[dict[str, Any]]]:
    """`/rules list`: an organization's rules in the order they are tried."""
    count = len(rules)
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": _text(
                f"*Classification rules* ({count}), tried in this order; the first that "
                "matches an inbound email decides its category."
                if rules
                else "*Classification rules*: none yet."
            ),
        }
    ]
    shown = 0
    sections: list[list[str]] = [[]]
    for rule in rules:
        line = rule_line(rule)
        if sections[-1] and len("\n".join([*sections[-1], line])) > MODAL_TEXT_CHARS:
            if len(sections) == RULE_SECTIONS:
                break
            sections.append([])
        sections[-1].append(line)
        shown += 1
    blocks.extend(
        {"type": "section", "text": _text("\n".join(lines))} for lines in sections if lines
    )
    footer = [
        "Admins: `/rules add &lt;type&gt; &lt;pattern&gt; &lt;CATEGORY&gt; [priority]`"
        " · `/rules remove &lt;id&gt;`"
    ]
    if shown < count:
        footer.insert(0, f"… and {count - shown} more: `GET /api/inbound/rules` lists them all.")
    blocks.append({"type": "context", "elements": [_text(" ".join(footer))]})
    return f"{count} classification rule{'s' if count != 1 else ''}", blocks


def campaign_help_message(
    usage: str, policy: ReplyPolicy | None
) -> tuple[str, list[dict[str, Any]]]:
    """`/campaign help`: the usage, then the organization's auto-reply policy (None: the
    workspace is not connected to an organization, so there is no policy to show)."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": _text(usage)}]
    if policy is None:
        return usage, blocks
    line = f"*Auto-replies* — {escape(policy.describe())}"
    if policy.enabled:
        line += "\nEvery auto-sent reply is shown on a card marked “auto-sent because …”."
    blocks.append({"type": "context", "elements": [_text(line)]})
    return f"{usage}\n\n{line}", blocks


# --- /engagement <email or name> (issue 14) ----------------------------------------------

#: Contacts `/engagement` offers when a name matches several.
MAX_CONTACT_CHOICES: Final = 10

# (events, one, many): the totals worth a word when there are any.
_TOTALS: Final[tuple[tuple[frozenset[EngagementEvent], str, str], ...]] = (
    (frozenset({EngagementEvent.MEETING_REQUEST}), "meeting asked for", "meetings asked for"),
    (frozenset({EngagementEvent.ORDER_AFTER_REPLY}), "order after a reply", "orders after a reply"),
    (frozenset({EngagementEvent.BOUNCED}), "bounce", "bounces"),
    (frozenset({EngagementEvent.OPTED_OUT}), "opt-out", "opt-outs"),
    (frozenset({EngagementEvent.COMPLAINT}), "spam complaint", "spam complaints"),
)


def engagement_totals_line(totals: Mapping[tuple[EngagementEvent, str | None], int]) -> str:
    """ "*Totals* · 3 sent · 2 replies (1 positive, 1 neutral) · 1 meeting asked for"."""

    def count(events: frozenset[EngagementEvent], sentiment: str | None = None) -> int:
        return sum(
            n
            for (event, said), n in totals.items()
            if event in events and (sentiment is None or (said or "neutral") == sentiment)
        )

    replies = count(REPLY_EVENTS)
    parts = [
        f"{count(frozenset({EngagementEvent.SENT})):,} sent",
        f"{replies:,} {'reply' if replies == 1 else 'replies'}",
    ]
    if replies:
        moods = [
            f"{n:,} {mood}"
            for mood in ("positive", "neutral", "negative")
            if (n := count(REPLY_EVENTS, mood))
        ]
        parts[-1] += f" ({', '.join(moods)})"
    for events, one, many in _TOTALS:
        n = count(events)
        if n:
            parts.append(f"{n:,} {one if n == 1 else many}")
    return "*Totals* · " + " · ".join(parts)


def engagement_message(
    contact: ContactOverview,
    *,
    lead_score: int | None,
    totals: Mapping[tuple[EngagementEvent, str | None], int],
) -> tuple[str, list[dict[str, Any]]]:
    """`/engagement`: who the contact is, their lead score, their engagement now and its
    trend, the totals of their timeline, and its latest events newest first."""
    history = contact.history
    works = ", ".join(safe(p, 300) for p in (contact.title, contact.company_name) if p)
    who = f"📇 *{safe(contact.name, 200)}*" + (f" · {works}" if works else "")
    who += f"\n{safe(contact.email, 320)}"
    trend = _TRENDS.get(history.trend.value, "trend unknown")
    lead = f"{lead_score}/100" if lead_score is not None else "not scored yet"
    fields = [
        f"*Lead score*\n{lead}",
        f"*Engagement now*\n{history.score:.0f}/100 · {trend}",
        f"*Status*\n{_contact_status(contact)}",
    ]
    if history.last_replied_at is not None:
        fields.append(f"*Last reply*\n{_date(history.last_replied_at)}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _text(who)},
        {"type": "section", "fields": [_text(f) for f in fields]},
        {"type": "context", "elements": [_text(engagement_totals_line(totals))]},
        {"type": "divider"},
    ]
    shown = len(history.entries)
    heading = "*Latest events*, newest first"
    if contact.earlier_events:
        heading += f" · {shown} of {shown + contact.earlier_events}"
    lines = [heading, *(_timeline_line(e, sentiment=True) for e in reversed(history.entries))]
    if not history.entries:
        lines.append("Nothing yet: no email sent to them, no reply from them.")
    footer = (
        f"The whole timeline: `GET /api/contacts/{contact.contact_id}/engagement-history`"
        " · `/engagement &lt;email or name&gt;` looks up another contact"
    )
    blocks += _sections(lines, limit=50 - len(blocks) - 1)
    blocks.append({"type": "context", "elements": [_text(footer)]})
    text = f"{contact.name} ({contact.email}): engagement {history.score:.0f}/100, {trend}"
    return _truncate(escape(text), 3000), blocks


def contact_choices_message(
    query: str, matches: Sequence[ContactMatch], *, more: bool
) -> tuple[str, list[dict[str, Any]]]:
    """`/engagement <name>` matching several contacts: a short list to pick from."""
    lines = [f"*Did you mean:* (“{safe(query, 200)}” matches more than one contact)"]
    for match in matches[:MAX_CONTACT_CHOICES]:
        client = f" · {safe(match.client_name, 200)}" if match.client_name else ""
        lines.append(f"• *{safe(match.name, 200)}* — {safe(match.email, 320)}{client}")
    if more:
        lines.append("…and more: type more of the name, or the address.")
    blocks: list[dict[str, Any]] = [
        *_sections(lines, limit=10),
        {
            "type": "context",
            "elements": [_text("`/engagement &lt;email&gt;` shows one of them.")],
        },
    ]
    shown = min(len(matches), MAX_CONTACT_CHOICES)
    return f"{shown}{'+' if more else ''} contacts match “{escape(query[:200])}”", blocks


def no_contact_text(query: str) -> str:
    """`/engagement` finding no one: say so, and how to search."""
    return (
        f"No contact of your organization matches “{safe(query, 200)}”. Give their email "
        "address, or the start of a first, last or full name: "
        "`/engagement maria@pinnacle.com`, `/engagement lopez`, `/engagement maria lo`."
    )
