"""The Bolt app: signature checks, retry de-duplication, listeners, OAuth install."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.lazy_listener import LazyListenerRunner
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_bolt.util.utils import get_name_for_callable
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.settings import Settings
from domain.clock import Clock
from handlers.slack import actions, commands, events, views
from handlers.slack.common import SlackDeps
from storage.events import claim_event_key
from storage.slack_deferred import SlackDeferredQueue

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"

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


class QueuedLazyRunner(LazyListenerRunner):
    """Store each lazy listener call in the database instead of running it here.

    Bolt calls `start` in the request's thread before it returns the ack, so a request
    Slack got 200 for is already durable; a worker (`jobs.slack_deferred`) runs it, in
    another process in production, keeping the web process's CPU for acks.
    """

    def __init__(
        self, queue: SlackDeferredQueue, clock: Clock, *, on_stored: Callable[[], None]
    ) -> None:
        self.logger = log
        self._queue = queue
        self._clock = clock
        self._on_stored = on_stored

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        """Store the call; Bolt has set the function's name on the copied request."""
        self._queue.enqueue(
            team_id=request.context.team_id,
            function=request.lazy_function_name or get_name_for_callable(function),
            body=request.raw_body,
            content_type=(request.headers.get("content-type") or [FORM])[0],
            now=self._clock.now(),
        )
        self._on_stored()


def build_bolt_app(
    settings: Settings,
    deps: SlackDeps,
    *,
    client: WebClient,
    oauth_settings: OAuthSettings | None = None,
    lazy_runner: LazyListenerRunner | None = None,
    replay: bool = False,
) -> App:
    """Build the Bolt app in single-workspace token mode, or OAuth mode when given settings.

    The web app acks and hands each lazy function to `lazy_runner`. With `replay=True`
    the app is the worker's: it runs stored calls (already verified by the web app when
    Slack sent them, maybe minutes ago) without checking their signatures again.
    """
    if not settings.SLACK_SIGNING_SECRET:
        raise ValueError("SLACK_SIGNING_SECRET is required to verify Slack's requests")
    # process_before_response=True runs each ack listener in the request's own thread,
    # so an ack never queues behind other work; the slow part of each listener is a lazy
    # function, stored by `lazy_runner` before the ack is returned.
    common: dict[str, Any] = {
        "signing_secret": settings.SLACK_SIGNING_SECRET,
        "client": client,
        "process_before_response": True,
        "request_verification_enabled": not replay,
    }
    if oauth_settings is not None:
        app = App(oauth_settings=oauth_settings, **common)
    else:
        app = App(token_verification_enabled=False, **common)
    if lazy_runner is not None:
        app.listener_runner.lazy_listener_runner = lazy_runner
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

    def middleware(
        request: BoltRequest,
        body: dict[str, Any],
        next: Callable[[], None],  # noqa: A002
    ) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        # A replayed lazy call was de-duplicated when Slack sent it.
        if event_id and not request.lazy_only:
            with session_factory() as session:
                first = claim_event_key(session, "slack_event", str(event_id))
                session.commit()
            if not first:
                log.info("duplicate Slack event ignored", extra={"event_id": event_id})
                return BoltResponse(status=200, body="")
        next()
        return None

    return middleware
