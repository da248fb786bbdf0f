"""A reply card's menus: Snooze (1 hour, tomorrow 9:00, next week), View thread, Open
contact and Re-label; and Unsnooze on a snoozed card.

Both menus carry `<choice>:<card id>` (`blocks.menu_value`) and share one dispatcher. The
ack opens what needs the trigger id while it is fresh (a modal showing "Loading…", the
re-label form); the lazy part, stored before the ack and run by the worker, does the
slow work: it snoozes the card, or fills the modal (`views.update` by its external id).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.errors import InvalidInput
from domain.snooze import SnoozeFor, snooze_until, time_zone_named
from handlers.slack.blocks import (
    contact_modal,
    loading_modal,
    notice_modal,
    parse_button_value,
    parse_menu_value,
    thread_modal,
)
from handlers.slack.common import (
    NAMES_NO_CARD,
    Bound,
    SlackDeps,
    ack_only,
    first_action,
    friendly,
    parse_action_value,
    resolve_actor,
    tell,
    tells_user_on_error,
    user_id_of,
)
from handlers.slack.events import publish_home_or_log
from handlers.slack.ids import ActionId, CallbackId, OverflowChoice
from handlers.slack.relabel import open_relabel_modal
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

SNOOZES: Final = {
    OverflowChoice.SNOOZE_HOUR: SnoozeFor.HOUR,
    OverflowChoice.SNOOZE_TOMORROW: SnoozeFor.TOMORROW,
    OverflowChoice.SNOOZE_NEXT_WEEK: SnoozeFor.NEXT_WEEK,
}
_MODALS: Final = {
    OverflowChoice.VIEW_THREAD: ("Thread", CallbackId.THREAD),
    OverflowChoice.OPEN_CONTACT: ("Contact", CallbackId.CONTACT),
}


def register(app: App, deps: SlackDeps) -> None:
    """Register the card menus' listeners (before the catch-all of unknown actions)."""
    for action in (ActionId.CARD_MORE, ActionId.CARD_SNOOZE):
        app.action(action.value)(ack=Bound(menu_ack, deps), lazy=[Bound(menu_choice, deps)])
    app.action(ActionId.UNSNOOZE.value)(ack=ack_only, lazy=[Bound(unsnooze, deps)])


def _choice(body: dict[str, Any]) -> tuple[OverflowChoice, int]:
    selected = (first_action(body) or {}).get("selected_option") or {}
    try:
        return parse_menu_value(selected.get("value") if isinstance(selected, dict) else None)
    except ValueError:
        raise InvalidInput(
            "This menu option does not name a card; it may come from an old message."
        ) from None


def modal_external_id(choice: OverflowChoice, card_id: int, body: dict[str, Any]) -> str:
    """The external id of the modal a menu click opened: its ack and its lazy part both
    derive it from the click (one trigger id, one modal)."""
    return f"{choice.value}:{card_id}:{body.get('trigger_id') or ''}"[:255]


@tells_user_on_error
def menu_ack(deps: SlackDeps, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """Acknowledge a menu choice; open its modal at once while the trigger id is fresh."""
    ack()
    choice, card_id = _choice(body)
    if choice in _MODALS:
        title, callback_id = _MODALS[choice]
        view = loading_modal(
            title,
            callback_id=callback_id,
            external_id=modal_external_id(choice, card_id, body),
        )
        _open(client, body, view)
    elif choice is OverflowChoice.RELABEL:
        _open_relabel(deps, body, client, card_id)


def _open(client: WebClient, body: dict[str, Any], view: dict[str, Any]) -> None:
    try:
        client.views_open(trigger_id=body["trigger_id"], view=view)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("expired_trigger_id", "exchanged_trigger_id"):
            tell(client, body, "⚠️ Slack took too long to open the window; choose it again.")
        else:
            tell(client, body, f"⚠️ Slack refused to open the window ({error}); try again.")


def _open_relabel(deps: SlackDeps, body: dict[str, Any], client: WebClient, card_id: int) -> None:
    actor = resolve_actor(deps, body, client)
    open_relabel_modal(deps, client, str(body.get("trigger_id") or ""), actor.org_id, card_id)


@tells_user_on_error
def menu_choice(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Do what the menu choice asks after the ack: snooze the card, or fill its modal."""
    choice, card_id = _choice(body)
    if choice in SNOOZES:
        actor = resolve_actor(deps, body, client)
        tz = time_zone_named(_slack_time_zone(client, actor.slack_user_id))
        until = snooze_until(SNOOZES[choice], now=deps.clock.now(), tz=tz)
        deps.outreach.snoozing.snooze_card(actor, card_id, until=until)
    elif choice in _MODALS:
        _fill_modal(deps, body, client, choice, card_id)


def _slack_time_zone(client: WebClient, slack_user_id: str | None) -> str | None:
    """The rep's time zone as Slack knows it (users.info), None when it cannot say.

    Organizations keep no time zone of their own, so without it a snooze is counted in UTC.
    """
    if not slack_user_id:
        return None
    try:
        info = client.users_info(user=slack_user_id)
    except SlackApiError as exc:
        log.warning(
            "no time zone for a snooze; counting in UTC",
            extra={"error": exc.response.get("error")},
        )
        return None
    tz = (info.get("user") or {}).get("tz")
    return str(tz) if tz else None


def _fill_modal(
    deps: SlackDeps,
    body: dict[str, Any],
    client: WebClient,
    choice: OverflowChoice,
    card_id: int,
) -> None:
    """Build "View thread" or "Open contact" and put it in the modal the ack opened."""
    title, callback_id = _MODALS[choice]
    try:
        actor = resolve_actor(deps, body, client)
        with UnitOfWork(deps.session_factory) as uow:
            if choice is OverflowChoice.VIEW_THREAD:
                view = thread_modal(uow.card_details.thread(actor.org_id, card_id))
            else:
                card = uow.cards.get(actor.org_id, card_id)
                if card.contact_id is None:
                    view = notice_modal(
                        title,
                        "This card has no contact: its sender is not one of your contacts. "
                        "Add them (CSV import or the REST API) to follow their engagement.",
                        callback_id=callback_id,
                    )
                else:
                    overview = uow.card_details.contact_overview(
                        actor.org_id, card.contact_id, now=deps.clock.now()
                    )
                    view = contact_modal(overview)
    except Exception as exc:  # noqa: BLE001 - said in the modal; friendly() logs the rest
        view = notice_modal(title, f"⚠️ {friendly(exc)}", callback_id=callback_id)
    external_id = modal_external_id(choice, card_id, body)
    view["external_id"] = external_id
    try:
        client.views_update(external_id=external_id, view=view)
    except SlackApiError as exc:
        # Closed before it was filled (not_found), or refused: the rep can open it again.
        log.warning(
            "a card's modal could not be filled",
            extra={"card_id": card_id, "choice": choice.value, "error": exc.response.get("error")},
        )
        if exc.response.get("error") != "not_found":
            tell(client, body, f"⚠️ Slack refused to show it ({exc.response.get('error')}).")


@tells_user_on_error
def unsnooze(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Bring a snoozed card back now, in its message (and the App Home, if clicked there)."""
    card_id, _ = parse_action_value(
        body,
        parse_button_value,
        refusal=NAMES_NO_CARD,
    )
    actor = resolve_actor(deps, body, client)
    deps.outreach.snoozing.unsnooze_card(actor, card_id)
    container = body.get("container") or {}
    if container.get("type") == "view" and user_id_of(body):
        publish_home_or_log(deps, body, client, failure="home refresh failed")
