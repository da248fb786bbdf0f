"""A person of the stand-in workspace using Salesbot: what Slack would send, signed as Slack signs.

The sandbox console, `salesbot demo` and the browser tests use this to drive the real path:
every command, button, overflow choice and modal submission becomes the form body Slack posts
to `/slack/events`, signed with the app's signing secret (v0 HMAC over timestamp and body),
with a trigger id and a response URL minted by the Slack stand-in, so that the app's
`views.open` and `respond()` land in the stand-in where the console shows them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from sandbox.slack_api import DEFAULT_TEAM_DOMAIN, DEFAULT_TEAM_ID, SlackStandIn, View

APP_ID = "A0SANDBOXAPP"
EVENTS_PATH = "/slack/events"


@dataclass(frozen=True)
class Ack:
    """What the app answered within Slack's 3 seconds."""

    status: int
    text: str

    @property
    def json(self) -> dict[str, Any] | None:
        """The answer as JSON (a modal's `response_action`, a command's message), if it is."""
        try:
            value = json.loads(self.text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    @property
    def ok(self) -> bool:
        """True when the app acknowledged (HTTP 200)."""
        return self.status == 200


def signed_headers(body: str, *, signing_secret: str) -> dict[str, str]:
    """The headers Slack sends with `body`: its timestamp and v0 signature."""
    stamp = str(int(time.time()))
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    if signature is None:  # only when the body is not a str; kept for the type checker
        raise ValueError("cannot sign this body")
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature,
    }


class SlackUser:
    """One member of the stand-in workspace, sending what Slack sends on their behalf."""

    def __init__(
        self,
        stand_in: SlackStandIn,
        *,
        app_url: str,
        signing_secret: str,
        user_id: str,
        team_id: str = DEFAULT_TEAM_ID,
        timeout: float = 10.0,
    ) -> None:
        self._slack = stand_in
        self._url = app_url.rstrip("/") + EVENTS_PATH
        self._secret = signing_secret
        self.user_id = user_id
        self.team_id = team_id
        self._timeout = timeout

    # --- what a person does --------------------------------------------------------------

    def command(self, command: str, text: str, *, channel_id: str) -> Ack:
        """Type `/command text` in a channel (or a DM's channel id)."""
        if not command.startswith("/"):
            raise ValueError("a slash command starts with '/'")
        channel = self._slack.channel(channel_id) if self._has_channel(channel_id) else None
        body = urlencode(
            {
                "token": "deprecated",
                "team_id": self.team_id,
                "team_domain": DEFAULT_TEAM_DOMAIN,
                "channel_id": channel_id,
                "channel_name": channel.name if channel is not None else "directmessage",
                "user_id": self.user_id,
                "user_name": self._username(),
                "command": command,
                "text": text,
                "api_app_id": APP_ID,
                "is_enterprise_install": "false",
                "response_url": self._slack.response_url(
                    channel=channel_id, user=self.user_id, team_id=self.team_id
                ),
                "trigger_id": self._slack.issue_trigger_id(user_id=self.user_id),
            }
        )
        return self._post(body)

    def click(
        self,
        element: Mapping[str, Any],
        *,
        block_id: str,
        channel_id: str | None = None,
        message_ts: str | None = None,
        view: View | None = None,
        selected_value: str | None = None,
    ) -> Ack:
        """Click a button, or choose `selected_value` in an overflow menu or static select,
        of a message (`channel_id` + `message_ts`) or of an open modal (`view`)."""
        action = self._action(element, block_id=block_id, selected_value=selected_value)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": DEFAULT_TEAM_DOMAIN},
            "user": self._user(),
            "api_app_id": APP_ID,
            "token": "deprecated",
            "trigger_id": self._slack.issue_trigger_id(
                user_id=self.user_id, view_id=view.id if view is not None else None
            ),
            "actions": [action],
        }
        if view is not None:
            payload["container"] = {"type": "view", "view_id": view.id}
            payload["view"] = self._view_payload(view, {})
        else:
            if channel_id is None or message_ts is None:
                raise ValueError("a click on a message needs its channel_id and message_ts")
            message = self._slack.message(channel_id, message_ts)
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            }
            payload["channel"] = {"id": channel_id}
            payload["message"] = message.to_api()
            payload["response_url"] = self._slack.response_url(
                channel=channel_id, user=self.user_id, team_id=self.team_id, message_ts=message_ts
            )
        return self._post(urlencode({"payload": json.dumps(payload)}))

    def submit(self, view: View, values: Mapping[str, Mapping[str, Any]]) -> Ack:
        """Submit a modal; `values` is Slack's `state.values` (block_id → action_id → value)."""
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": DEFAULT_TEAM_DOMAIN},
            "user": self._user(),
            "api_app_id": APP_ID,
            "token": "deprecated",
            "trigger_id": self._slack.issue_trigger_id(user_id=self.user_id, view_id=view.id),
            "view": self._view_payload(view, values),
        }
        return self._post(urlencode({"payload": json.dumps(payload)}))

    def close(self, view: View) -> Ack | None:
        """Close a modal with its Cancel button; Slack tells the app only when the modal
        asked (`notify_on_close`)."""
        if not view.definition.get("notify_on_close"):
            return None
        payload = {
            "type": "view_closed",
            "team": {"id": self.team_id, "domain": DEFAULT_TEAM_DOMAIN},
            "user": self._user(),
            "api_app_id": APP_ID,
            "view": self._view_payload(view, {}),
            "is_cleared": False,
        }
        return self._post(urlencode({"payload": json.dumps(payload)}))

    # --- the wire ------------------------------------------------------------------------

    def _post(self, body: str) -> Ack:
        headers = signed_headers(body, signing_secret=self._secret)
        response = httpx.post(
            self._url, content=body.encode(), headers=headers, timeout=self._timeout
        )
        return Ack(status=response.status_code, text=response.text)

    def _has_channel(self, channel_id: str) -> bool:
        try:
            self._slack.channel(channel_id)
        except KeyError:
            return False
        return True

    def _username(self) -> str:
        try:
            return self._slack.user(self.user_id).name
        except KeyError:
            return self.user_id.lower()

    def _user(self) -> dict[str, Any]:
        return {"id": self.user_id, "username": self._username(), "team_id": self.team_id}

    def _view_payload(self, view: View, values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        return {
            **view.to_api(),
            "state": {"values": {block: dict(actions) for block, actions in values.items()}},
        }

    @staticmethod
    def _action(
        element: Mapping[str, Any], *, block_id: str, selected_value: str | None
    ) -> dict[str, Any]:
        kind = str(element.get("type", "button"))
        action: dict[str, Any] = {
            "type": kind,
            "action_id": element.get("action_id"),
            "block_id": block_id,
            "action_ts": f"{time.time():.6f}",
        }
        if kind == "button":
            if "value" in element:
                action["value"] = element["value"]
            if "text" in element:
                action["text"] = element["text"]
            return action
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options.extend(group.get("options") or [])
        chosen = next((o for o in options if o.get("value") == selected_value), None)
        if chosen is None:
            raise ValueError(f"{selected_value!r} is not an option of {element.get('action_id')}")
        action["selected_option"] = chosen
        return action
