"""Block Kit of a newsletter issue's preview card and its Edit form (docs/newsletters.md).

Pure functions of the domain's `IssueCard`. What the issue renders to is content the
organization's authors wrote and subscribers' data filled in: it is shown escaped with
mentions disarmed (`safe`), never as mrkdwn of its own.
"""

from __future__ import annotations

import json
from typing import Any, Final

from domain.mrkdwn import safe
from domain.newsletters import IssueCard, IssueStatus, NewsletterIssue
from handlers.slack.ids import ActionId, BlockId, CallbackId

#: The text part shown in the message.
PREVIEW_CHARS: Final = 2_000
#: Slack's plain_text_input holds at most this many characters.
MAX_INPUT: Final = 3_000


def _text(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def issue_button_value(issue_id: int, fingerprint: str | None) -> str:
    """A button's value: the issue and the fingerprint of what the card shows."""
    return json.dumps({"issue": issue_id, "fp": fingerprint}, separators=(",", ":"))


def parse_issue_value(value: str | None) -> tuple[int, str | None]:
    """Read an issue id and fingerprint from a button value; raise ValueError if malformed."""
    try:
        data = json.loads(value or "")
        issue_id = int(data["issue"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError("this button does not name a newsletter issue") from exc
    fingerprint = data.get("fp")
    return issue_id, str(fingerprint) if fingerprint else None


def _button(
    text: str, action: ActionId, card: IssueCard, *, style: str | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text),
        "action_id": action.value,
        "value": issue_button_value(card.issue_id, card.fingerprint),
    }
    if style:
        button["style"] = style
    return button


def issue_card_message(card: IssueCard) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and blocks of an issue's preview card."""
    name = safe(card.newsletter_name, 200)
    title = safe(card.title, 300)
    to = f" · sample: {safe(card.sample_email, 320)}" if card.sample_email else ""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _text(f"📰  *{name}* · {title}    `{card.status.value}`")},
        {
            "type": "section",
            "text": _text(
                f"*Audience* {card.audience_count:,} subscribers{to}\n"
                f"*Plan* {safe(card.plan_line, 300)}"
            ),
        },
        {"type": "divider"},
        {"type": "section", "text": _text(f"*Subject*  {safe(card.sample_subject, 300)}")},
        {"type": "section", "text": _text(safe(card.sample_text, PREVIEW_CHARS) or " ")},
    ]
    if card.note:
        # The note is ours (who approved, the plan); its mentions are real ones.
        blocks.append({"type": "context", "elements": [_text(card.note[:2_000])]})
    if card.status == IssueStatus.IN_REVIEW:
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.CARD_ACTIONS,
                "elements": [
                    _button(
                        "Approve & schedule", ActionId.NEWSLETTER_APPROVE, card, style="primary"
                    ),
                    _button("Edit", ActionId.NEWSLETTER_EDIT, card),
                    _button("Reject", ActionId.NEWSLETTER_REJECT, card, style="danger"),
                ],
            }
        )
    fallback = f"Newsletter {card.newsletter_name}: {card.title} ({card.status.value})"
    return fallback[:3000], blocks


def issue_edit_modal(issue: NewsletterIssue) -> dict[str, Any]:
    """The modal that edits an issue's subject, text and HTML templates."""

    def field(block: BlockId, action: ActionId, label: str, value: str) -> dict[str, Any]:
        return {
            "type": "input",
            "block_id": block,
            "label": _plain(label),
            "optional": block == BlockId.NEWSLETTER_HTML,
            "element": {
                "type": "plain_text_input",
                "action_id": action,
                "multiline": block != BlockId.NEWSLETTER_SUBJECT,
                "initial_value": value,
                "max_length": MAX_INPUT,
            },
        }

    blocks = [
        field(
            BlockId.NEWSLETTER_SUBJECT,
            ActionId.NEWSLETTER_SUBJECT_INPUT,
            "Subject (Jinja2)",
            issue.subject_template,
        )
    ]
    parts = (
        (BlockId.NEWSLETTER_TEXT, ActionId.NEWSLETTER_TEXT_INPUT, "Text part", issue.text_template),
        (BlockId.NEWSLETTER_HTML, ActionId.NEWSLETTER_HTML_INPUT, "HTML part", issue.html_template),
    )
    for block, action, label, value in parts:
        if len(value) <= MAX_INPUT:
            blocks.append(field(block, action, f"{label} (Jinja2)", value))
            continue
        # Cut to fit, it would be saved cut: it is left out, and kept as it is.
        note = (
            f"The {label.lower()} is longer than a Slack form holds; it is kept as it is"
            " (change it through the API)."
        )
        blocks.append({"type": "context", "elements": [_text(note)]})
    return {
        "type": "modal",
        "callback_id": CallbackId.EDIT_NEWSLETTER_ISSUE,
        "private_metadata": issue_button_value(issue.id, issue.card_fingerprint),
        "title": _plain("Edit issue", 24),
        "submit": _plain("Save", 24),
        "close": _plain("Cancel", 24),
        "blocks": blocks,
    }
