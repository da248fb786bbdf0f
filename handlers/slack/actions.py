"""Button clicks on cards: approve, edit, reject, retry, view full, approve all, and a rep's
cadence step done or skipped."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.cards import Card, CardState, review_refusal
from domain.errors import InvalidInput, NotFound, NotPermitted
from domain.outreach import StaleCard
from handlers.slack import card_menu
from handlers.slack.blocks import edit_modal, full_body_modal, parse_button_value, reject_modal
from handlers.slack.common import (
    NAMES_NO_CARD,
    Bound,
    SlackDeps,
    ack_only,
    clicked_action,
    parse_action_value,
    resolve_actor,
    tell,
    tells_user_on_error,
)
from handlers.slack.events import publish_home_or_log
from handlers.slack.ids import ActionId
from handlers.slack.referrals import enroll_referral, open_referral_form
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


def register(app: App, deps: SlackDeps) -> None:
    """Register the block action listeners."""
    app.action(ActionId.APPROVE.value)(ack=ack_only, lazy=[Bound(approve, deps)])
    app.action(ActionId.RETRY.value)(ack=ack_only, lazy=[Bound(retry, deps)])
    app.action(ActionId.EDIT.value)(Bound(open_modal, deps))
    app.action(ActionId.REJECT.value)(Bound(open_modal, deps))
    app.action(ActionId.VIEW_FULL.value)(Bound(open_modal, deps))
    app.action(ActionId.APPROVE_ALL.value)(ack=ack_only, lazy=[Bound(approve_all, deps)])
    app.action(ActionId.STEP_DONE.value)(ack=ack_only, lazy=[Bound(step_done, deps)])
    app.action(ActionId.STEP_SKIP.value)(ack=ack_only, lazy=[Bound(step_skip, deps)])
    app.action(ActionId.REFRESH_HOME.value)(ack=ack_only, lazy=[Bound(refresh_home, deps)])
    app.action(ActionId.CONNECT_GMAIL.value)(ack_only)
    card_menu.register(app, deps)
    app.action(ActionId.ENROLL_REFERRAL.value)(
        ack=Bound(open_referral_form, deps), lazy=[Bound(enroll_referral, deps)]
    )
    # Registered last: Bolt runs the first listener that matches, so this only catches
    # action ids no other listener knows.
    app.action(re.compile(".+"))(ack=ack_only, lazy=[unknown])


def approve(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Approve the clicked card as shown, then refresh the App Home if the click came from it."""
    _approve_as_shown(deps, body, client)
    _refresh_home_if_there(deps, body, client)


@tells_user_on_error
def _approve_as_shown(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    card_id, fingerprint = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    try:
        deps.outreach.review.approve_card(actor, card_id, fingerprint=fingerprint)
    except StaleCard as exc:
        deps.outreach.presenting.show_card(actor.org_id, card_id)
        tell(client, body, f"⚠️ {exc.message}")


@tells_user_on_error
def retry(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Approve a card whose send failed again, whatever draft it now shows."""
    card_id, _ = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    deps.outreach.review.approve_card(actor, card_id, fingerprint=None)


def step_done(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Mark a rep's step done (the touch is recorded); the message says who and when."""
    _step_done(deps, body, client)
    _refresh_home_if_there(deps, body, client)


@tells_user_on_error
def _step_done(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    card_id, _ = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    deps.outreach.review.complete_step(actor, card_id)


def step_skip(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Skip a rep's step: the contact's cadence goes on; the message says who skipped it."""
    _step_skip(deps, body, client)
    _refresh_home_if_there(deps, body, client)


@tells_user_on_error
def _step_skip(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    card_id, _ = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    deps.outreach.review.skip_step(actor, card_id)


@tells_user_on_error
def open_modal(deps: SlackDeps, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Open the edit/reject/full modal at once, while the trigger id is fresh."""
    ack()
    action_id = clicked_action(body).get("action_id")
    card_id, fingerprint = _card_ref(body)
    actor = resolve_actor(deps, body, client)
    with UnitOfWork(deps.session_factory) as uow:
        card = uow.cards.get(actor.org_id, card_id)
    if action_id == ActionId.VIEW_FULL:
        view = full_body_modal(card)
    elif action_id == ActionId.EDIT:
        _refuse_unless_reviewable(card, CardState.IN_REVIEW)
        if fingerprint and card.draft_fingerprint and fingerprint != card.draft_fingerprint:
            deps.outreach.presenting.show_card(actor.org_id, card_id)
        view = edit_modal(card)
    else:
        _refuse_unless_reviewable(card, CardState.REJECTED)
        view = reject_modal(card)
    try:
        client.views_open(trigger_id=body["trigger_id"], view=view)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            tell(client, body, "⚠️ Slack took too long to open the form; click the button again.")
        else:
            tell(client, body, f"⚠️ Slack refused to open the form ({error}).")


@tells_user_on_error
def approve_all(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Approve every card of a bulk message's batch; the message becomes the summary."""
    try:
        value = json.loads(clicked_action(body).get("value") or "{}")
        job_id, batch = int(value["job"]), int(value["batch"])
    except (ValueError, KeyError, TypeError):
        tell(client, body, "⚠️ This button does not name a batch of cards.")
        return
    actor = resolve_actor(deps, body, client)
    cards = deps.outreach.review.batch_cards(actor.org_id, job_id, batch)
    sent, refused = 0, 0
    for card in cards:
        try:
            done = deps.outreach.review.approve_card(actor, card.id, fingerprint=None)
            sent += done.state == CardState.DONE
        except (InvalidInput, NotFound, NotPermitted):
            refused += 1
    approved = len(cards) - refused
    who = f"<@{actor.slack_user_id}>"
    summary = f"✅ Approved {approved} of {len(cards)} by {who}; {sent} sent."
    container = body.get("container") or {}
    if container.get("channel_id") and container.get("message_ts"):
        client.chat_update(
            channel=container["channel_id"],
            ts=container["message_ts"],
            text=summary,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": summary}}],
        )
    else:
        tell(client, body, summary)


def refresh_home(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Publish the clicking user's App Home again."""
    publish_home_or_log(deps, body, client, failure="home refresh failed")


def unknown(body: dict[str, Any], client: WebClient) -> None:
    """Tell the user that a button from an older version of Salesbot does nothing now."""
    action_id = str((clicked_action(body) if body.get("actions") else {}).get("action_id", "?"))
    tell(
        client,
        body,
        f"⚠️ Salesbot does not know the button `{action_id}`; this message may come from an "
        "older version. Your current cards are in Salesbot's App Home.",
    )


def _card_ref(body: dict[str, Any]) -> tuple[int, str | None]:
    clicked_action(body)  # a click without an action is told so, not that it names no card
    return parse_action_value(
        body,
        parse_button_value,
        refusal=NAMES_NO_CARD,
    )


def _refuse_unless_reviewable(card: Card, to: CardState) -> None:
    """Refuse to open a form whose submission the card's state would refuse."""
    refusal = review_refusal(card, to)
    if refusal is not None:
        raise InvalidInput(refusal)


def _refresh_home_if_there(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    container = body.get("container") or {}
    if container.get("type") == "view" and (body.get("view") or {}).get("type") == "home":
        publish_home_or_log(deps, body, client, failure="home refresh failed")
