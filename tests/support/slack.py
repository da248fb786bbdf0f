"""Helpers for tests that talk to the Slack Web API stand-in, and sign requests as Slack does.

A test module serves one stand-in for all its tests and resets it between them:

    @pytest.fixture(scope="module")
    def served_slack() -> Iterator[ServedSlack]:
        with serve_slack_stand_in() as served:
            yield served

    @pytest.fixture
    def slack(served_slack: ServedSlack) -> SlackStandIn:
        served_slack.stand_in.reset()
        return served_slack.stand_in
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

from slack_sdk import WebClient
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.signature import SignatureVerifier

from handlers.slack.ids import ActionId
from sandbox.server import RunningServer
from sandbox.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_CHANNEL_ID,
    DEFAULT_TEAM_ID,
    SlackStandIn,
    api_base_url,
    start_slack_stand_in,
)


@dataclass(frozen=True)
class ServedSlack:
    """A stand-in and the loopback server it is served on."""

    stand_in: SlackStandIn
    server: RunningServer

    @property
    def api_url(self) -> str:
        """Return the base_url for a WebClient (the value of SLACK_API_URL)."""
        return api_base_url(self.server)

    def client(
        self,
        *,
        token: str | None = DEFAULT_BOT_TOKEN,
        retry_handlers: Sequence[RetryHandler] = (),
    ) -> WebClient:
        """Return the official WebClient pointed at the stand-in (no retries unless given)."""
        return WebClient(token=token, base_url=self.api_url, retry_handlers=list(retry_handlers))


@contextmanager
def serve_slack_stand_in(stand_in: SlackStandIn | None = None) -> Iterator[ServedSlack]:
    """Serve a Slack stand-in on a loopback port for the duration of the block."""
    stand_in, server = start_slack_stand_in(stand_in)
    try:
        yield ServedSlack(stand_in=stand_in, server=server)
    finally:
        server.stop()


def signed_headers(
    body: str, *, signing_secret: str, timestamp: int | None = None
) -> dict[str, str]:
    """Return the headers Slack sends with `body`, signed with `signing_secret`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature,
    }


def slash_command_body(
    command: str,
    text: str,
    *,
    user_id: str,
    channel_id: str,
    team_id: str,
    trigger_id: str,
    response_url: str = "https://hooks.slack.com/commands/T0SANDBOX/1/sandbox",
) -> str:
    """Return the form body Slack posts for a slash command."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": team_id,
            "team_domain": "sandbox",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0SANDBOXAPP",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


def approve_click_body(card_id: int, fingerprint: str | None, *, user: str) -> str:
    """The form body Slack posts when `user` clicks Approve on a card in the sandbox channel."""
    payload = {
        "type": "block_actions",
        "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox"},
        "user": {"id": user, "username": user.lower(), "team_id": DEFAULT_TEAM_ID},
        "api_app_id": "A0SANDBOXAPP",
        "trigger_id": "1.2.3",
        "container": {"type": "message", "message_ts": "1.0", "channel_id": DEFAULT_CHANNEL_ID},
        "channel": {"id": DEFAULT_CHANNEL_ID},
        "actions": [
            {
                "type": "button",
                "action_id": ActionId.APPROVE.value,
                "block_id": "card_actions",
                "value": json.dumps({"card": card_id, "fp": fingerprint}),
                "action_ts": "1.0",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})
