"""Events: the App Home tab lists the rep's pending cards and the Gmail connection."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from handlers.slack.blocks import home_view
from handlers.slack.common import Bound, SlackDeps, friendly, resolve_actor, user_id_of
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

HOME_CARDS = 15


def register(app: App, deps: SlackDeps) -> None:
    """Register the event listeners."""
    app.event("app_home_opened")(ack=ack_event, lazy=[Bound(home_opened, deps)])
    app.event("message")(ignore_messages)


def ack_event(ack: Ack) -> None:
    """Acknowledge an event whose work runs after the ack."""
    ack()


def home_opened(
    deps: SlackDeps, body: dict[str, Any], event: dict[str, Any], client: WebClient
) -> None:
    """Publish the App Home when the user opens its tab."""
    if event.get("tab") not in (None, "home"):
        return
    publish_home_or_log(deps, body, client, failure="app home not published")


def ignore_messages() -> None:
    """Direct messages to the bot carry no commands; Slack needs a 200 all the same."""


def publish_home(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> None:
    """Render and publish the acting user's App Home."""
    actor = resolve_actor(deps, body, client)
    owner = None if actor.is_admin else actor.user_id
    with UnitOfWork(deps.session_factory) as uow:
        cards = uow.cards.list_open(actor.org_id, owner_id=owner, limit=HOME_CARDS)
        total = uow.cards.count_open(actor.org_id, owner_id=owner)
    views = [deps.outreach.presenting.card_view(actor.org_id, c.id) for c in cards]
    view = home_view(
        views,
        pending_total=total,
        gmail_email=deps.gmail_address(actor),
        connect_url=deps.gmail_connect_url(actor),
    )
    client.views_publish(user_id=user_id_of(body) or "", view=view)


def publish_home_or_log(
    deps: SlackDeps, body: dict[str, Any], client: WebClient, *, failure: str
) -> None:
    """Publish the App Home; a failure is logged as `failure`, not raised: a raised error
    would have the replay worker run the whole listener again (after a click, its approval
    with it)."""
    try:
        publish_home(deps, body, client)
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning(failure, extra={"reason": friendly(exc)})
