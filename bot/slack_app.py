"""The Bolt app: signature checks, retry de-duplication, listeners, OAuth install."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.settings import Settings
from handlers.slack import actions, commands, events, views
from handlers.slack.common import SlackDeps
from storage.events import claim_event_key

log = logging.getLogger(__name__)

BOT_SCOPES = [
    "app_mentions:read",
    "channels:read",
    "chat:write",
    "chat:write.public",
    "commands",
    "groups:read",
    "im:history",
    "im:read",
    "im:write",
    "users:read",
    "users:read.email",
]


def build_bolt_app(
    settings: Settings,
    deps: SlackDeps,
    *,
    client: WebClient,
    oauth_settings: OAuthSettings | None = None,
) -> App:
    """Build the Bolt app in single-workspace token mode, or OAuth mode when given settings."""
    if not settings.SLACK_SIGNING_SECRET:
        raise ValueError("SLACK_SIGNING_SECRET is required to verify Slack's requests")
    # process_before_response=True runs each ack listener in the request's own thread,
    # so an ack never queues behind slow work; that work is in lazy listeners, which Bolt
    # runs on its executor after the response (sized so a burst of clicks fits).
    common: dict[str, Any] = {
        "signing_secret": settings.SLACK_SIGNING_SECRET,
        "client": client,
        "process_before_response": True,
        "listener_executor": ThreadPoolExecutor(max_workers=16, thread_name_prefix="slack-lazy"),
    }
    if oauth_settings is not None:
        app = App(oauth_settings=oauth_settings, **common)
    else:
        app = App(token_verification_enabled=False, **common)
    app.middleware(_dedupe_events(deps.session_factory))
    commands.register(app, deps)
    actions.register(app, deps)
    views.register(app, deps)
    events.register(app, deps)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        error_id = uuid.uuid4().hex[:10]
        log.error(
            "unhandled Slack listener error",
            exc_info=error,
            extra={"error_id": error_id, "type": body.get("type")},
        )

    return app


def _dedupe_events(
    session_factory: Callable[[], Session],
) -> Callable[..., BoltResponse | None]:
    """Process each Slack event once, however often Slack retries it (X-Slack-Retry-Num)."""

    def middleware(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:  # noqa: A002
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            with session_factory() as session:
                first = claim_event_key(session, "slack_event", str(event_id))
                session.commit()
            if not first:
                log.info("duplicate Slack event ignored", extra={"event_id": event_id})
                return BoltResponse(status=200, body="")
        next()
        return None

    return middleware
