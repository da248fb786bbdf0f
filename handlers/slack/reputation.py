"""Clicks on a review's drafted response card (docs/reputation.md): Approve response (records
it and marks the review responded), Edit (a modal; save, or save and approve), Reject.

The escalation card uses the ordinary Approve ("Mark handled") and Reject ("Dismiss").
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.cards import CardState, review_refusal
from domain.errors import InvalidInput, SalesbotError
from domain.outreach import StaleCard
from domain.reputation_service import Reputation
from handlers.slack.blocks import parse_button_value
from handlers.slack.common import (
    NAMES_NO_CARD,
    Bound,
    SlackDeps,
    ack_only,
    parse_action_value,
    resolve_actor,
    tell,
    tells_user_on_error,
)
from handlers.slack.ids import ActionId, BlockId, CallbackId
from handlers.slack.reputation_blocks import response_edit_modal
from storage.uow import UnitOfWork


def register(app: App, deps: SlackDeps) -> None:
    """Register the review response listeners (before the catch-all of unknown actions)."""
    app.action(ActionId.REVIEW_APPROVE.value)(ack=ack_only, lazy=[Bound(approve, deps)])
    app.action(ActionId.REVIEW_REJECT.value)(ack=ack_only, lazy=[Bound(reject, deps)])
    app.action(ActionId.REVIEW_EDIT.value)(Bound(open_edit, deps))
    app.view(CallbackId.EDIT_REVIEW_RESPONSE.value)(ack=ack_edit, lazy=[Bound(save_edit, deps)])


def _reputation(deps: SlackDeps) -> Reputation:
    if deps.reputation is None:
        raise SalesbotError("Reviews are not set up in this Salesbot; ask an admin.")
    return deps.reputation


def _card_ref(body: dict[str, Any]) -> tuple[int, str | None]:
    return parse_action_value(
        body,
        parse_button_value,
        refusal=NAMES_NO_CARD,
    )


@tells_user_on_error
def approve(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Approve the response as shown: it is recorded on the review, the card shows who."""
    card_id, fingerprint = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    try:
        _reputation(deps).approve_response(actor, card_id, fingerprint=fingerprint)
    except StaleCard as exc:
        deps.outreach.presenting.show_card(actor.org_id, card_id)
        tell(client, body, f"⚠️ {exc.message}")


@tells_user_on_error
def reject(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Reject the drafted response: no response for this review."""
    card_id, _ = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    _reputation(deps).decline_response(actor, card_id, reason=None)


@tells_user_on_error
def open_edit(deps: SlackDeps, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Open the edit modal at once, while the trigger id is fresh."""
    ack()
    card_id, _ = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    with UnitOfWork(deps.session_factory) as uow:
        card = uow.cards.get(actor.org_id, card_id)
    refusal = review_refusal(card, CardState.IN_REVIEW)
    if refusal is not None:
        raise InvalidInput(refusal)
    try:
        client.views_open(trigger_id=body["trigger_id"], view=response_edit_modal(card))
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            tell(client, body, "⚠️ Slack took too long to open the form; click Edit again.")
        else:
            tell(client, body, f"⚠️ Slack refused to open the form ({error}).")


def _values(view: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = (view.get("state") or {}).get("values") or {}
    return values


def ack_edit(ack: Ack, view: dict[str, Any]) -> None:
    """Accept the modal, or keep it open when the response is empty."""
    text = (_values(view).get(BlockId.RESPONSE, {}).get(ActionId.RESPONSE_INPUT, {})).get("value")
    if not (text or "").strip():
        ack(response_action="errors", errors={BlockId.RESPONSE: "The response cannot be empty."})
    else:
        ack()


@tells_user_on_error
def save_edit(
    deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: WebClient
) -> None:
    """Save the edited response, and approve it when the box was ticked."""
    try:
        card_id, fingerprint = parse_button_value(view.get("private_metadata"))
    except ValueError:
        tell(client, body, "⚠️ This form does not name a card; open it again from the card.")
        return
    values = _values(view)
    text = values.get(BlockId.RESPONSE, {}).get(ActionId.RESPONSE_INPUT, {}).get("value") or ""
    options = (
        values.get(BlockId.OPTIONS, {}).get(ActionId.APPROVE_AFTER_EDIT, {}).get("selected_options")
        or []
    )
    approve_now = any(o.get("value") == "approve" for o in options)
    actor = resolve_actor(deps, body, client)
    _reputation(deps).edit_response(
        actor, card_id, text=text, approve=approve_now, fingerprint=fingerprint
    )
