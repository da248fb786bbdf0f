"""Shows cards in Slack through the Web API (the ChatNotifier port)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from domain.cards import Card, CardView
from domain.errors import ExternalServiceError
from domain.reply_routing import ChannelStatus, ChannelUnavailable
from handlers.slack.blocks import bulk_message, card_message

log = logging.getLogger(__name__)

# Slack answers these when the channel or token is wrong: retrying does not help.
_PERMANENT = {
    "channel_not_found": "the review channel does not exist or the bot is not in it",
    "not_in_channel": "the bot is not a member of the review channel; invite it",
    "is_archived": "the review channel is archived",
    "invalid_auth": "Salesbot's Slack token is invalid; reinstall the app",
    "account_inactive": "Salesbot's Slack token was revoked; reinstall the app",
    "message_not_found": "the card's message was deleted",
}
# A channel that refuses the bot itself: posting elsewhere helps (domain/reply_routing.py).
_CHANNEL_REFUSALS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})


def add_retry_handlers(client: WebClient, *, max_rate_limit_retries: int = 30) -> WebClient:
    """Make a client retry `ratelimited` answers after Retry-After, and dropped connections."""
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=max_rate_limit_retries))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=3))
    return client


class ChannelPacer:
    """Spaces posts to each channel (Slack allows about one message a second per channel).

    Pacing on our side keeps us under the limit instead of bouncing off 429s; a 429
    that still comes is retried by the client after Retry-After.
    """

    def __init__(self, interval_seconds: float) -> None:
        self._interval = interval_seconds
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, channel: str) -> None:
        """Block until a message may be posted to `channel`."""
        if self._interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(channel, now))
            self._next[channel] = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


class SlackNotifier:
    """Posts a card's message to its review channel (or the owner's DM) and updates it."""

    def __init__(
        self, client_for_org: Callable[[int], WebClient], *, post_interval_seconds: float = 1.0
    ) -> None:
        self._client_for_org = client_for_org
        self._pacer = ChannelPacer(post_interval_seconds)

    def post_card(
        self, view: CardView, *, channel: str | None, owner_slack_id: str | None
    ) -> tuple[str, str]:
        """Post a card; return (channel id, ts)."""
        client = self._client_for_org(view.card.org_id)
        text, blocks = card_message(view)
        try:
            target = channel
            if not target:
                if not owner_slack_id:
                    raise ExternalServiceError(
                        "no review channel and the job's owner has no Slack id to DM"
                    )
                opened = client.conversations_open(users=owner_slack_id)
                target = str(opened["channel"]["id"])
            self._pacer.wait(target)
            response = client.chat_postMessage(
                channel=target, text=text, blocks=blocks, unfurl_links=False
            )
        except SlackApiError as exc:
            raise _external(exc, channel=channel) from exc
        return str(response["channel"]), str(response["ts"])

    def channel_status(self, org_id: int, channel_id: str) -> ChannelStatus:
        """Say whether the bot can see a channel, is in it, and whether it is archived."""
        client = self._client_for_org(org_id)
        try:
            info = client.conversations_info(channel=channel_id)
        except SlackApiError as exc:
            if exc.response.get("error") == "channel_not_found":
                return ChannelStatus(channel_id=channel_id, found=False)
            raise _external(exc) from exc
        except (SlackClientError, OSError) as exc:
            # Slack unreachable or timing out: the API routes that check a channel (triage,
            # the marketing channel) answer a warning instead of failing with a 500.
            raise ExternalServiceError(
                f"Slack could not be reached ({exc})", retryable=True
            ) from exc
        channel = info.get("channel") or {}
        return ChannelStatus(
            channel_id=channel_id,
            found=True,
            name=channel.get("name"),
            is_member=bool(channel.get("is_member")),
            is_archived=bool(channel.get("is_archived")),
            is_private=bool(channel.get("is_private")),
        )

    def post_bulk(
        self,
        org_id: int,
        *,
        job_name: str,
        job_id: int,
        batch: int,
        cards: list[Card],
        channel: str | None,
        owner_slack_id: str | None,
    ) -> None:
        """Post one message for a batch of drafts with "Approve all N" (bulk mode)."""
        client = self._client_for_org(org_id)
        value = json.dumps({"job": job_id, "batch": batch}, separators=(",", ":"))
        text, blocks = bulk_message(job_name=job_name, batch=batch, cards=cards, value=value)
        try:
            target = channel
            if not target:
                if not owner_slack_id:
                    raise ExternalServiceError("no review channel and no owner to DM")
                target = str(client.conversations_open(users=owner_slack_id)["channel"]["id"])
            self._pacer.wait(target)
            client.chat_postMessage(channel=target, text=text, blocks=blocks, unfurl_links=False)
        except SlackApiError as exc:
            raise _external(exc) from exc

    def update_card(self, view: CardView) -> None:
        """Update a card's message in place."""
        card = view.card
        if not (card.slack_channel_id and card.slack_message_ts):
            return
        client = self._client_for_org(card.org_id)
        text, blocks = card_message(view)
        try:
            client.chat_update(
                channel=card.slack_channel_id, ts=card.slack_message_ts, text=text, blocks=blocks
            )
        except SlackApiError as exc:
            raise _external(exc) from exc

    def replace_message(self, org_id: int, *, channel: str, ts: str, text: str) -> None:
        """Replace a message with one line and no buttons (its card was posted again)."""
        client = self._client_for_org(org_id)
        block = {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
        try:
            client.chat_update(channel=channel, ts=ts, text=text, blocks=[block])
        except SlackApiError as exc:
            raise _external(exc) from exc


def _external(exc: SlackApiError, *, channel: str | None = None) -> ExternalServiceError:
    """The error to raise for a Slack refusal; posting to `channel` (not a DM), a refusal
    of the bot by the channel is a ChannelUnavailable."""
    error = str(exc.response.get("error", "unknown_error"))
    reason = _PERMANENT.get(error)
    if channel and error in _CHANNEL_REFUSALS:
        return ChannelUnavailable(f"Slack: {reason} ({error})", channel_id=channel, error=error)
    if reason:
        return ExternalServiceError(f"Slack: {reason} ({error})", retryable=False)
    return ExternalServiceError(f"Slack answered {error}", retryable=error == "ratelimited")
