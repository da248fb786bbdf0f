"""The Bolt app: signature checks, retry de-duplication, listeners, OAuth install."""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.lazy_listener import LazyListenerRunner
from slack_bolt.listener.thread_runner import ThreadListenerRunner
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_bolt.util.utils import get_name_for_callable
from slack_sdk import WebClient

from bot.settings import Settings
from bot.slack_oauth import CachedAuthorize, SalesbotOAuthFlow, install_link_signer
from domain.clock import Clock
from handlers.slack import (
    actions,
    commands,
    content,
    events,
    newsletters,
    proposals,
    relabel,
    reputation,
    views,
)
from handlers.slack.common import SlackDeps
from jobs.loop import GroupWriter
from storage.events import EventKeyStore
from storage.slack_calls import NewCall, SlackCallQueue

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"

BOT_SCOPES = [
    "app_mentions:read",
    "channels:read",
    "chat:write",
    "chat:write.public",
    "commands",
    "files:write",
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
    Slack got 200 for is already durable; a worker (`jobs.slack_replay`) runs it, in
    another process in production, keeping the web process's CPU for acks. The calls of
    concurrent requests are stored together, one transaction a batch (a burst of clicks
    would otherwise queue behind one transaction each).
    """

    def __init__(
        self, queue: SlackCallQueue, clock: Clock, *, on_stored: Callable[[], None]
    ) -> None:
        self.logger = log
        self._writer: GroupWriter[NewCall, int] = GroupWriter(
            lambda calls: queue.enqueue(calls, now=clock.now()), name="slack-call-writer"
        )
        self._on_stored = on_stored

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        """Store the call; Bolt has set the function's name on the copied request."""
        self._writer.submit(
            NewCall(
                team_id=request.context.team_id,
                function=request.lazy_function_name or get_name_for_callable(function),
                body=request.raw_body,
                content_type=(request.headers.get("content-type") or [FORM])[0],
            )
        )
        self._on_stored()


class _ShallowLazyCopyRunner(ThreadListenerRunner):
    """Bolt's listener runner, with a cheap copy of the request for each lazy call.

    Bolt deep-copies the whole parsed payload for the thread a lazy function runs in;
    `QueuedLazyRunner` only reads the raw body and the team id from it, before the ack,
    so a shallow copy that carries the lazy function's name is enough. The deep copy
    was half of the CPU an ack of a card click cost.
    """

    def _build_lazy_request(self, request: BoltRequest, lazy_func_name: str) -> BoltRequest:
        copied = copy.copy(request)
        copied.lazy_only = True
        copied.lazy_function_name = lazy_func_name
        return copied


def _store_lazy_calls(app: App, lazy_runner: QueuedLazyRunner) -> None:
    current = app.listener_runner
    app._listener_runner = _ShallowLazyCopyRunner(  # noqa: SLF001 - no public setter
        logger=current.logger,
        process_before_response=current.process_before_response,
        listener_error_handler=current.listener_error_handler,
        listener_start_handler=current.listener_start_handler,
        listener_completion_handler=current.listener_completion_handler,
        listener_executor=current.listener_executor,
        lazy_listener_runner=lazy_runner,
    )


def build_bolt_app(
    settings: Settings,
    deps: SlackDeps,
    *,
    client: WebClient,
    oauth_settings: OAuthSettings | None = None,
    authorize: CachedAuthorize | None = None,
    lazy_runner: QueuedLazyRunner | None = None,
    replay: bool = False,
) -> App:
    """Build the Bolt app in single-workspace token mode, or OAuth mode when given settings.

    The web app acks and hands each lazy function to `lazy_runner`. With `replay=True`
    the app is the worker's: it runs stored calls (already verified by the web app when
    Slack sent them, maybe minutes ago) without checking their signatures again. In OAuth
    mode, give the web app and the worker's app one `authorize`, so that the replay of a
    click finds the authorization its ack cached.
    """
    if not settings.SLACK_SIGNING_SECRET:
        raise ValueError("SLACK_SIGNING_SECRET is required to verify Slack's requests")
    # process_before_response=True runs each ack listener in the request's own thread,
    # so an ack never queues behind other work; the slow part of each listener is a lazy
    # function, stored by `lazy_runner` before the ack is returned.
    common: dict[str, Any] = {
        # Named here: without a name Bolt takes its caller's file name from inspect.stack(),
        # which reads the source of every frame on the stack (0.5 s under pytest).
        "name": "salesbot",
        "signing_secret": settings.SLACK_SIGNING_SECRET,
        "client": client,
        "process_before_response": True,
        # Neither app checks signatures itself: the web route (bot/app.py: _mount_slack)
        # verifies the signature and timestamp before Bolt reads the body, and the worker's
        # replays were verified there when Slack sent them. A second check by Bolt was the
        # same HMAC again on every request's hot path.
        "request_verification_enabled": False,
    }
    if oauth_settings is not None:
        authorize = authorize or CachedAuthorize(oauth_settings.authorize)
        flow = SalesbotOAuthFlow(
            client=client,
            settings=oauth_settings,
            signer=install_link_signer(settings.SALESBOT_SECRET_KEY),
        )
        # Bolt annotates `authorize` as returning an AuthorizeResult, yet takes its own
        # `Authorize` classes, whose result is None for a workspace not installed, as they are.
        app = App(oauth_flow=flow, authorize=authorize, **common)  # type: ignore[arg-type]
        app.middleware(authorize.middleware)
    else:
        app = App(token_verification_enabled=False, **common)
    if lazy_runner is not None:
        _store_lazy_calls(app, lazy_runner)
    app.middleware(_dedupe_events(EventKeyStore(deps.session_factory)))
    commands.register(app, deps)
    # Before actions: its catch-all answers any action id not registered before it.
    proposals.register(app, deps)
    relabel.register(app, deps)
    reputation.register(app, deps)
    content.register(app, deps)
    newsletters.register(app, deps)
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


def _dedupe_events(keys: EventKeyStore) -> Callable[..., BoltResponse | None]:
    """Process each Slack event once, however often Slack retries it (X-Slack-Retry-Num)."""

    def middleware(
        request: BoltRequest,
        body: dict[str, Any],
        next: Callable[[], None],  # noqa: A002
    ) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        # A replayed lazy call was de-duplicated when Slack sent it.
        if event_id and not request.lazy_only:
            if not keys.claim("slack_event", str(event_id)):
                log.info("duplicate Slack event ignored", extra={"event_id": event_id})
                return BoltResponse(status=200, body="")
        next()
        return None

    return middleware
