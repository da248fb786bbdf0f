"""Block Kit: pure functions from domain views to Slack JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from domain.cards import Card, CardState, CardType, CardView
from domain.jobs import Job
from domain.reply_policy import ReplyPolicy
from domain.rules import Rule
from handlers.slack.ids import ActionId, BlockId, CallbackId

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
}


def _text(text: str, *, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": text}


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": _truncate(text, limit), "emoji": True}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def escape(text: str) -> str:
    """Escape text for mrkdwn (Slack's three control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
        # Our own sentence (domain/reply_routing.py), not escaped: its <#C…> and <@U…>
        # name the channel and the rep, from validated Slack ids.
        blocks.append(
            {"type": "context", "elements": [_text(f"↪️ {_truncate(str(routing), 2900)}")]}
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
    fallback = f"{card.title}: {status}" if status else f"{card.title} — waiting for review"
    return _truncate(fallback, 3000), blocks


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
            card = view.card
            line = f"{_ICONS.get(card.type, '•')} *{escape(card.title)}*"
            if card.state == CardState.BLOCKED:
                line += f"\n⚠️ {escape(card.blocked_reason or 'blocked')}"
            elif card.action_payload.get("subject"):
                line += f"\n_{escape(str(card.action_payload['subject']))}_"
            blocks.append({"type": "section", "text": _text(_truncate(line, 2900))})
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        _button(
                            "Approve & send" if card.sends_email else "Mark done",
                            ActionId.APPROVE,
                            card,
                            style="primary",
                        ),
                        _button("Reject", ActionId.REJECT, card, style="danger"),
                    ],
                }
            )
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
    footer = ["Admins: `/rules add <type> <pattern> <CATEGORY> [priority]` · `/rules remove <id>`"]
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
