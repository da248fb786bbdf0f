"""Block Kit of review cards (docs/reputation.md): a drafted response, an escalation.

Pure functions of the card view. Review text is the public's: it is shown escaped with
mentions disarmed (`safe`), never as mrkdwn of its own.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from domain.cards import Card, CardState, CardType, CardView
from domain.mrkdwn import safe
from handlers.slack.ids import ActionId, BlockId, CallbackId

#: The draft shown in the message; the modal holds the whole response.
RESPONSE_PREVIEW: Final = 1_500
REVIEW_PREVIEW: Final = 1_200
MAX_RESPONSE_INPUT: Final = 3_000

POST_IT_YOURSELF: Final = (
    "Approving records this response; post it on the review site yourself "
    "(Salesbot does not post to review sites)."
)
_PLATFORMS: Final = {
    "google": "Google",
    "yelp": "Yelp",
    "facebook": "Facebook",
    "zillow": "Zillow",
    "trustpilot": "Trustpilot",
}
_ROUTES: Final = {"account_manager": "the account manager", "legal": "legal", "user": "you"}


def is_review_card(card: Card) -> bool:
    """True for a review's response or escalation card."""
    return card.type in (CardType.REVIEW_RESPONSE, CardType.REVIEW_ESCALATION)


def _text(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_text(text)]}


def _when(at: datetime | None) -> str:
    if at is None:
        return ""
    return f" at <!date^{int(at.timestamp())}^{{time}}|{at.strftime('%H:%M')} UTC>"


def _who(slack_id: str | None) -> str:
    return f"<@{slack_id}>" if slack_id else "someone"


def review_button_value(card: Card) -> str:
    """A button's value: the card and the fingerprint of the response shown."""
    return json.dumps({"card": card.id, "fp": card.draft_fingerprint}, separators=(",", ":"))


def _button(text: str, action: ActionId, card: Card, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text),
        "action_id": action.value,
        "value": review_button_value(card),
    }
    if style:
        button["style"] = style
    return button


def _review_lines(card: Card) -> list[dict[str, Any]]:
    payload = card.action_payload
    rating = int(payload.get("rating") or 0)
    stars = "★" * rating + "☆" * (5 - rating)
    platform = _PLATFORMS.get(str(payload.get("platform")), str(payload.get("platform")))
    author = safe(str(payload.get("author") or "Anonymous"), 200)
    score = float(payload.get("sentiment_score") or 0.0)
    url = payload.get("review_url")
    link = (
        f" · <{safe(str(url), 500)}|open>"
        if isinstance(url, str) and url.startswith("http")
        else ""
    )
    head = (
        f"*{stars}* on *{platform}* by {author}{link}\n"
        f"Sentiment *{safe(str(payload.get('sentiment', '?')), 20)}* ({score:+.2f}, "
        f"{safe(str(payload.get('sentiment_source', '?')), 60)})"
    )
    blocks = [{"type": "section", "text": _text(head)}]
    text = (card.description or "").strip()
    if text:
        quoted = "\n".join(f">{line}" for line in safe(text, REVIEW_PREVIEW).splitlines())
        blocks.append({"type": "section", "text": _text(quoted)})
    return blocks


def _status(view: CardView) -> str:
    card = view.card
    actor = _who(view.actor_slack_id)
    if card.state == CardState.DONE:
        if card.type == CardType.REVIEW_RESPONSE:
            edited = " (edited)" if card.action_payload.get("edited_by") else ""
            return f"✅ Response approved{edited} by {actor}{_when(card.executed_at)}"
        return f"✅ Handled by {actor}{_when(card.executed_at)}"
    if card.state == CardState.REJECTED:
        reason = f': "{safe(card.rejected_reason, 300)}"' if card.rejected_reason else ""
        verb = "No response" if card.type == CardType.REVIEW_RESPONSE else "Dismissed"
        return f"🚫 {verb}, by {actor}{reason}"
    if card.state == CardState.WITHDRAWN:
        return f"🚫 Withdrawn: {safe(card.withdrawn_reason or 'no longer needed', 300)}"
    return ""


def review_card_message(view: CardView) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and blocks of a review's response or escalation card."""
    card = view.card
    payload = card.action_payload
    icon = "⭐" if card.type == CardType.REVIEW_RESPONSE else "🚨"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": _text(f"{icon}  *{safe(card.title, 300)}*    `{card.priority.value}`"),
        }
    ]
    blocks += _review_lines(card)
    if card.type == CardType.REVIEW_ESCALATION:
        route = _ROUTES.get(str(payload.get("escalated_to")), "a person")
        reason = safe(str(payload.get("escalation_reason") or card.rationale or ""), 1_500)
        blocks.append({"type": "section", "text": _text(f"*Escalated to {route}*  {reason}")})
    else:
        response = str(payload.get("response") or "")
        blocks.append({"type": "divider"})
        blocks.append(
            {
                "type": "section",
                "text": _text(f"*Drafted response*\n{safe(response, RESPONSE_PREVIEW) or ' '}"),
            }
        )
        note = payload.get("draft_note")
        if note:
            blocks.append(_context(f"ℹ️ {safe(str(note), 300)}"))
        blocks.append(_context(f"ℹ️ {POST_IT_YOURSELF}"))
    routing = payload.get("routing_note")
    if routing:
        blocks.append(_context(f"↪️ {safe(str(routing), 300)}"))
    status = _status(view)
    if status:
        blocks.append(_context(status))
    elif card.type == CardType.REVIEW_RESPONSE:
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.CARD_ACTIONS,
                "elements": [
                    _button("Approve response", ActionId.REVIEW_APPROVE, card, style="primary"),
                    _button("Edit", ActionId.REVIEW_EDIT, card),
                    _button("Reject", ActionId.REVIEW_REJECT, card, style="danger"),
                ],
            }
        )
    else:
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.CARD_ACTIONS,
                "elements": [
                    _button("Mark handled", ActionId.APPROVE, card, style="primary"),
                    _button("Dismiss", ActionId.REJECT, card),
                ],
            }
        )
    title = safe(card.title, 300)
    fallback = f"{title}: {status}" if status else f"{title} — waiting for you"
    return fallback[:3000], blocks


def review_home_buttons(card: Card) -> list[dict[str, Any]]:
    """A review card's buttons in the App Home."""
    if card.type == CardType.REVIEW_RESPONSE:
        return [
            _button("Approve response", ActionId.REVIEW_APPROVE, card, style="primary"),
            _button("Edit", ActionId.REVIEW_EDIT, card),
            _button("Reject", ActionId.REVIEW_REJECT, card, style="danger"),
        ]
    return [
        _button("Mark handled", ActionId.APPROVE, card, style="primary"),
        _button("Dismiss", ActionId.REJECT, card),
    ]


def response_edit_modal(card: Card) -> dict[str, Any]:
    """The modal that edits a review's drafted response."""
    response = str(card.action_payload.get("response") or "")
    return {
        "type": "modal",
        "callback_id": CallbackId.EDIT_REVIEW_RESPONSE,
        "private_metadata": review_button_value(card),
        "title": _plain("Edit response", 24),
        "submit": _plain("Save", 24),
        "close": _plain("Cancel", 24),
        "blocks": [
            {
                "type": "input",
                "block_id": BlockId.RESPONSE,
                "label": _plain("Response"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ActionId.RESPONSE_INPUT,
                    "multiline": True,
                    "initial_value": response[:MAX_RESPONSE_INPUT],
                    "max_length": MAX_RESPONSE_INPUT,
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
                    "options": [{"text": _plain("Approve this response now"), "value": "approve"}],
                },
            },
        ],
    }
