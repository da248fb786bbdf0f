"""What every Slack listener shares: who is acting, and how errors reach them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from domain.accounts import Accounts
from domain.clock import Clock
from domain.errors import NotPermitted, SalesbotError
from domain.outreach import Actor, Outreach

log = logging.getLogger(__name__)


@dataclass
class SlackDeps:
    """Collaborators of the Slack listeners, built by the composition root."""

    outreach: Outreach
    accounts: Accounts
    session_factory: Callable[[], Session]
    clock: Clock
    wake_worker: Callable[[], None]
    gmail_connect_url: Callable[[Actor], str | None]
    gmail_address: Callable[[Actor], str | None]


class NotConnected(SalesbotError):
    """The Slack workspace is not bound to a Salesbot organization."""

    code = "not_connected"


def team_id_of(body: dict[str, Any]) -> str | None:
    """Return the workspace id of any Slack payload."""
    team = body.get("team")
    if isinstance(team, dict) and team.get("id"):
        return str(team["id"])
    if body.get("team_id"):
        return str(body["team_id"])
    user = body.get("user")
    if isinstance(user, dict) and user.get("team_id"):
        return str(user["team_id"])
    return None


def user_id_of(body: dict[str, Any]) -> str | None:
    """Return the acting user's Slack id of any Slack payload."""
    user = body.get("user")
    if isinstance(user, dict) and user.get("id"):
        return str(user["id"])
    if body.get("user_id"):
        return str(body["user_id"])
    event = body.get("event")
    if isinstance(event, dict) and event.get("user"):
        return str(event["user"])
    return None


def resolve_actor(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> Actor:
    """Map the Slack user of a payload to a Salesbot user of the workspace's organization.

    A Slack user seen for the first time is linked by their email (users.info) to the
    user with that address, or becomes a rep of the organization.
    """
    team_id, slack_user = team_id_of(body), user_id_of(body)
    if not team_id or not slack_user:
        raise NotPermitted("This request does not say which workspace and user it comes from.")
    org, user = deps.accounts.find_slack_user(team_id, slack_user)
    if org is None:
        raise NotConnected(
            "This Slack workspace is not connected to a Salesbot organization. "
            "Ask an admin to run `salesbot org link-slack --org <slug> --team-id "
            f"{team_id}` (or to install Salesbot with `salesbot org install-link`)."
        )
    if user is None:
        try:
            info = client.users_info(user=slack_user)
        except SlackApiError as exc:
            raise NotPermitted(
                f"Salesbot could not look you up in Slack ({exc.response.get('error')})."
            ) from exc
        profile = (info.get("user") or {}).get("profile") or {}
        email = profile.get("email")
        if not email:
            raise NotPermitted(
                "Salesbot needs your email address to link you; grant users:read.email."
            )
        name = profile.get("real_name") or (info.get("user") or {}).get("name")
        user = deps.accounts.link_first_seen_slack_user(
            org.id, slack_user_id=slack_user, email=email, name=name
        )
    return Actor(org_id=org.id, user_id=user.id, role=user.role, slack_user_id=slack_user)


def friendly(exc: Exception) -> str:
    """Turn an exception into a sentence for the person who clicked."""
    if isinstance(exc, SalesbotError):
        return exc.message
    error_id = uuid.uuid4().hex[:10]
    log.error("slack listener failed", exc_info=exc, extra={"error_id": error_id})
    return (
        f"Something went wrong on our side (error id {error_id}). "
        "Nothing was sent twice; try again."
    )


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """Tell the acting user something only they see (ephemeral, or a DM as fallback)."""
    user = user_id_of(body)
    channel = (
        (body.get("channel") or {}).get("id") if isinstance(body.get("channel"), dict) else None
    )
    channel = channel or body.get("channel_id")
    if not user:
        return
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
        else:
            client.chat_postMessage(channel=user, text=text)
    except SlackApiError as exc:
        log.warning("could not tell the user", extra={"error": exc.response.get("error")})
