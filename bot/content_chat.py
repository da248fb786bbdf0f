"""The content calendar's cards in Slack (the ContentChat port, docs/content-calendar.md).

Each card carries message metadata naming its scheduled post, so that a worker taking a
post again after another died (Slack had the card, its ts was never recorded) finds the
card in the channel's history instead of posting a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from domain.content import DueCard, ScheduleEntry
from domain.errors import ExternalServiceError
from handlers.slack.content_blocks import acted_card, due_card

log = logging.getLogger(__name__)

#: The metadata event type of a due card.
EVENT_TYPE: Final = "salesbot_content_card"
#: Messages of the history read when looking for a card already posted.
_HISTORY_LIMIT: Final = 200
_PERMANENT: Final = {
    "channel_not_found": "the marketing channel does not exist or Salesbot is not in it",
    "not_in_channel": "Salesbot is not a member of the marketing channel; invite it",
    "is_archived": "the marketing channel is archived",
    "user_not_found": "the owner's Slack account was not found",
    "invalid_auth": "Salesbot's Slack token is invalid; reinstall the app",
    "account_inactive": "Salesbot's Slack token was revoked; reinstall the app",
    "message_not_found": "the card's message was deleted",
}


def _external(exc: SlackApiError | SlackClientError | OSError) -> ExternalServiceError:
    if not isinstance(exc, SlackApiError):
        return ExternalServiceError(f"Slack could not be reached ({exc})", retryable=True)
    error = str(exc.response.get("error", "unknown_error"))
    reason = _PERMANENT.get(error)
    if reason:
        return ExternalServiceError(f"Slack: {reason} ({error})", retryable=False)
    return ExternalServiceError(f"Slack answered {error}", retryable=True)


def _key(card: DueCard) -> dict[str, Any]:
    """What names a card in its metadata: its post, and the due time it was posted for."""
    return {"schedule_id": card.entry.id, "due_at": card.entry.due_at.isoformat()}


class SlackContentChat:
    """Posts due cards to an owner's DM or the marketing channel, and updates them."""

    def __init__(self, client_for_org: Callable[[int], WebClient]) -> None:
        self._client_for_org = client_for_org

    def open_target(self, org_id: int, target: str) -> str:
        """The DM channel of a user id; a channel id as it is."""
        if not target.startswith(("U", "W")):
            return target
        try:
            opened = self._client_for_org(org_id).conversations_open(users=target)
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise _external(exc) from exc
        return str(opened["channel"]["id"])

    def find_card(self, org_id: int, channel_id: str, card: DueCard) -> str | None:
        """The ts of this post's card among the channel's latest messages, if one is there
        (the latest, not those since the post was due: a card is posted when it is claimed,
        and the newest messages of a DM or a marketing channel hold it)."""
        try:
            history = self._client_for_org(org_id).conversations_history(
                channel=channel_id,
                include_all_metadata=True,
                limit=_HISTORY_LIMIT,
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise _external(exc) from exc
        for message in history.get("messages") or []:
            metadata: Any = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == EVENT_TYPE and payload == _key(card):
                log.info(
                    "content card found posted before",
                    extra={"org_id": org_id, "schedule_id": card.entry.id},
                )
                return str(message["ts"])
        return None

    def post_card(self, org_id: int, channel_id: str, card: DueCard) -> str:
        """Post a due card; return its ts."""
        text, blocks = due_card(card)
        try:
            answer = self._client_for_org(org_id).chat_postMessage(
                channel=channel_id,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": EVENT_TYPE, "event_payload": _key(card)},
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise _external(exc) from exc
        return str(answer["ts"])

    def update_card(
        self,
        org_id: int,
        entry: ScheduleEntry,
        *,
        body: str,
        link: str | None,
        time_zone: str,
        actor_slack_id: str | None,
    ) -> None:
        """Show on the card what happened to its post."""
        if not (entry.card_channel_id and entry.card_ts):
            return
        text, blocks = acted_card(
            entry, body=body, link=link, time_zone=time_zone, actor_slack_id=actor_slack_id
        )
        try:
            self._client_for_org(org_id).chat_update(
                channel=entry.card_channel_id, ts=entry.card_ts, text=text, blocks=blocks
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise _external(exc) from exc
