"""Button clicks on cards: approve, edit, reject, retry, view full, approve all."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import edit_modal, full_body_modal, parse_button_value, reject_modal
from bot.slack_ids import ActionId
from domain.cards import CardState
from domain.errors import InvalidInput, NotFound, NotPermitted
from domain.outreach import StaleCard
from handlers.slack.common import SlackDeps, friendly, resolve_actor, tell
from handlers.slack.events import publish_home
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


def _action(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions") or []
    if not actions or not isinstance(actions[0], dict):
        raise InvalidInput("This click carried no action; reload the message and try again.")
    action: dict[str, Any] = actions[0]
    return action


def _card_ref(body: dict[str, Any]) -> tuple[int, str | None]:
    try:
        return parse_button_value(_action(body).get("value"))
    except ValueError:
        raise InvalidInput(
            "This button does not name a card; it may come from an old message."
        ) from None


def register(app: App, deps: SlackDeps) -> None:
    """Register the block action listeners."""

    def ack_only(ack: Ack) -> None:
        ack()

    def approve(body: dict[str, Any], client: WebClient) -> None:
        try:
            card_id, fingerprint = _card_ref(body)
            actor = resolve_actor(deps, body, client)
            deps.outreach.review.approve_card(actor, card_id, fingerprint=fingerprint)
        except StaleCard as exc:
            card_id, _ = _card_ref(body)
            deps.outreach.presenting.show_card(_org_of(deps, body, client), card_id)
            tell(client, body, f"⚠️ {exc.message}")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence for the rep
            tell(client, body, f"⚠️ {friendly(exc)}")
        _refresh_home_if_there(deps, body, client)

    def retry(body: dict[str, Any], client: WebClient) -> None:
        try:
            card_id, _ = _card_ref(body)
            actor = resolve_actor(deps, body, client)
            deps.outreach.review.approve_card(actor, card_id, fingerprint=None)
        except Exception as exc:  # noqa: BLE001
            tell(client, body, f"⚠️ {friendly(exc)}")

    def open_modal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Open the edit/reject/full modal at once, while the trigger id is fresh."""
        ack()
        action_id = _action(body).get("action_id")
        try:
            card_id, fingerprint = _card_ref(body)
            actor = resolve_actor(deps, body, client)
            with UnitOfWork(deps.session_factory) as uow:
                card = uow.cards.get(actor.org_id, card_id)
            if action_id == ActionId.VIEW_FULL:
                view = full_body_modal(card)
            elif not card.is_open:
                state = card.state.value.replace("_", " ")
                raise InvalidInput(f"This card is already {state}; it cannot be changed.")
            elif action_id == ActionId.EDIT:
                if fingerprint and card.draft_fingerprint and fingerprint != card.draft_fingerprint:
                    deps.outreach.presenting.show_card(actor.org_id, card_id)
                view = edit_modal(card)
            else:
                view = reject_modal(card)
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in ("expired_trigger_id", "exchanged_trigger_id"):
                tell(
                    client, body, "⚠️ Slack took too long to open the form; click the button again."
                )
            else:
                tell(client, body, f"⚠️ Slack refused to open the form ({error}).")
        except Exception as exc:  # noqa: BLE001
            tell(client, body, f"⚠️ {friendly(exc)}")

    def approve_all(body: dict[str, Any], client: WebClient) -> None:
        try:
            value = json.loads(_action(body).get("value") or "{}")
            job_id, batch = int(value["job"]), int(value["batch"])
        except (ValueError, KeyError, TypeError):
            tell(client, body, "⚠️ This button does not name a batch of cards.")
            return
        try:
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
        except Exception as exc:  # noqa: BLE001
            tell(client, body, f"⚠️ {friendly(exc)}")

    def refresh_home(body: dict[str, Any], client: WebClient) -> None:
        try:
            publish_home(deps, body, client)
        except Exception as exc:  # noqa: BLE001
            log.warning("home refresh failed", extra={"reason": friendly(exc)})

    app.action(ActionId.APPROVE.value)(ack=ack_only, lazy=[approve])
    app.action(ActionId.RETRY.value)(ack=ack_only, lazy=[retry])
    app.action(ActionId.EDIT.value)(open_modal)
    app.action(ActionId.REJECT.value)(open_modal)
    app.action(ActionId.VIEW_FULL.value)(open_modal)
    app.action(ActionId.APPROVE_ALL.value)(ack=ack_only, lazy=[approve_all])
    app.action(ActionId.REFRESH_HOME.value)(ack=ack_only, lazy=[refresh_home])
    app.action(ActionId.CONNECT_GMAIL.value)(ack_only)

    def unknown(body: dict[str, Any], client: WebClient) -> None:
        action_id = str((_action(body) if body.get("actions") else {}).get("action_id", "?"))
        tell(
            client,
            body,
            f"⚠️ Salesbot does not know the button `{action_id}`; this message may come from an "
            "older version. Your current cards are in Salesbot's App Home.",
        )

    # Registered last: Bolt runs the first listener that matches, so this only catches
    # action ids no other listener knows.
    app.action(re.compile(".+"))(ack=ack_only, lazy=[unknown])


def _org_of(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> int:
    return resolve_actor(deps, body, client).org_id


def _refresh_home_if_there(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    container = body.get("container") or {}
    if container.get("type") == "view" and (body.get("view") or {}).get("type") == "home":
        try:
            publish_home(deps, body, client)
        except Exception as exc:  # noqa: BLE001
            log.warning("home refresh failed", extra={"reason": friendly(exc)})
