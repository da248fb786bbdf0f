"""Re-label from a card: a modal with the message's category, intent and sentiment.

The card's overflow menu calls `open_relabel_modal` while its trigger id is fresh; the
submission is acked at once and re-labelled after the ack (`Corrections.relabel`), which
re-renders the card; the rep is told in a DM what the re-label changed.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.classification import Category, Intent, Sentiment
from domain.corrections import LabelSet, RelabelOutcome
from domain.errors import InvalidInput
from handlers.slack.blocks import safe
from handlers.slack.common import (
    Bound,
    SlackDeps,
    corrections_of,
    resolve_actor,
    tell,
    tells_user_on_error,
)
from handlers.slack.ids import ActionId, BlockId, CallbackId

log = logging.getLogger(__name__)

NOT_A_RELABEL_FORM = "⚠️ This form does not name a card; open Re-label again from the card."

_FIELDS: tuple[tuple[BlockId, ActionId, str, type[StrEnum]], ...] = (
    (BlockId.CATEGORY, ActionId.CATEGORY_INPUT, "Category", Category),
    (BlockId.INTENT, ActionId.INTENT_INPUT, "Intent", Intent),
    (BlockId.SENTIMENT, ActionId.SENTIMENT_INPUT, "Sentiment", Sentiment),
)


def register(app: App, deps: SlackDeps) -> None:
    """Register the re-label modal's submission."""
    app.view(CallbackId.RELABEL_CARD.value)(ack=ack_relabel, lazy=[Bound(save_relabel, deps)])


def _option(value: str) -> dict[str, Any]:
    label = value.replace("_", " ") if value.islower() else value
    return {"text": {"type": "plain_text", "text": label}, "value": value}


def relabel_modal(card_id: int, inbound_email_id: int, labels: LabelSet) -> dict[str, Any]:
    """The re-label modal, prefilled with the message's labels now."""
    current = {
        BlockId.CATEGORY: labels.category.value,
        BlockId.INTENT: labels.intent.value,
        BlockId.SENTIMENT: labels.sentiment.value,
    }
    blocks: list[dict[str, Any]] = [
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Set what this email really is. Salesbot re-applies what the labels "
                    "decide (an opt-out for REMOVE, or undoing one it made) and learns from it.",
                }
            ],
        }
    ]
    for block_id, action_id, label, values in _FIELDS:
        blocks.append(
            {
                "type": "input",
                "block_id": block_id.value,
                "label": {"type": "plain_text", "text": label},
                "element": {
                    "type": "static_select",
                    "action_id": action_id.value,
                    "options": [_option(v.value) for v in values],
                    "initial_option": _option(current[block_id]),
                },
            }
        )
    return {
        "type": "modal",
        "callback_id": CallbackId.RELABEL_CARD.value,
        "title": {"type": "plain_text", "text": "Re-label"},
        "submit": {"type": "plain_text", "text": "Re-label"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps(
            {"card": card_id, "email": inbound_email_id}, separators=(",", ":")
        ),
        "blocks": blocks,
    }


def open_relabel_modal(
    deps: SlackDeps, client: WebClient, trigger_id: str, org_id: int, card_id: int
) -> None:
    """Open the re-label modal of a card, prefilled with its message's labels.

    Raises InvalidInput, with what to do, when the card has no classified message or Slack
    refuses the form (a trigger id older than three seconds, say).
    """
    email_id, labels = corrections_of(deps).labels_of_card(org_id, card_id)
    try:
        client.views_open(trigger_id=trigger_id, view=relabel_modal(card_id, email_id, labels))
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            raise InvalidInput(
                "Slack took too long to open the form; choose Re-label again."
            ) from exc
        raise InvalidInput(f"Slack refused to open the form ({error}); try again.") from exc


def chosen(view: dict[str, Any]) -> dict[str, str | None]:
    """Return the values chosen in the modal: {"category": …, "intent": …, "sentiment": …}."""
    values = (view.get("state") or {}).get("values") or {}
    picked: dict[str, str | None] = {}
    for block_id, action_id, _, _ in _FIELDS:
        element = (values.get(block_id.value) or {}).get(action_id.value) or {}
        option = element.get("selected_option") or {}
        value = option.get("value") if isinstance(option, dict) else None
        picked[block_id.value] = str(value) if value is not None else None
    return picked


def ack_relabel(ack: Ack, view: dict[str, Any]) -> None:
    """Accept the modal, or keep it open when a value is outside the lists."""
    errors: dict[str, str] = {}
    picked = chosen(view)
    for block_id, _, label, values in _FIELDS:
        value = picked[block_id.value]
        if value is not None and value not in {v.value for v in values}:
            errors[block_id.value] = f"{label} {value[:40]!r} is not one of the choices."
    if errors:
        ack(response_action="errors", errors=errors)
    else:
        ack()


@tells_user_on_error
def save_relabel(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Re-label the card's message as chosen, and tell the rep what it changed."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        card_id, email_id = int(meta["card"]), int(meta["email"])
    except (ValueError, KeyError, TypeError):
        tell(client, body, NOT_A_RELABEL_FORM)
        return
    actor = resolve_actor(deps, body, client)
    picked = chosen(view)
    outcome = corrections_of(deps).relabel(
        actor.org_id,
        email_id,
        actor=actor,
        category=picked["category"],
        intent=picked["intent"],
        sentiment=picked["sentiment"],
        card_id=card_id,
    )
    tell(client, body, outcome_text(outcome))


def outcome_text(outcome: RelabelOutcome) -> str:
    """What a re-label did, for the rep."""
    if not outcome.changed:
        return f"Nothing to re-label: {safe(outcome.effects[0])}."
    # The effects name senders' addresses: outside text, escaped for mrkdwn.
    return f"✏️ Re-labelled email {outcome.inbound_email_id}:\n{safe(outcome.summary)}"
