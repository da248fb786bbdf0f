"""Stored Slack calls for the tests of the queue and of the replay worker: a card click as
the web process stores it, and the row the queue committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode

from sqlalchemy.orm import Session

from storage.models import SlackDeferredCall
from storage.slack_calls import NewCall

FORM = "application/x-www-form-urlencoded"
TEAM = "T0LENDER"


def click_body(value: str, *, action_id: str = "approve", team: str = TEAM) -> str:
    """Return the form body Slack posts when Maria clicks a card's button."""
    payload = {
        "type": "block_actions",
        "api_app_id": "A0SALESBOT",
        "token": "verification-token",
        "trigger_id": "1337.42.abcdef",
        "team": {"id": team, "domain": "pinnacle"},
        "user": {"id": "U0MARIA", "team_id": team},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "card",
                "value": value,
                "action_ts": "1764082800.000100",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def click(value: str, *, function: str = "approve_card", team: str | None = TEAM) -> NewCall:
    """Return the call the web process stores for a click's lazy function."""
    return NewCall(team_id=team, function=function, body=click_body(value), content_type=FORM)


def clicked_value(body: str) -> str:
    """Return the value of the button a stored click body carries."""
    return str(json.loads(parse_qs(body)["payload"][0])["actions"][0]["value"])


def stored(session_factory: Callable[[], Session], call_id: int) -> SlackDeferredCall | None:
    """Read a call's row as committed by the queue."""
    with session_factory() as session:
        return session.get(SlackDeferredCall, call_id)


def status_of(session_factory: Callable[[], Session], call_id: int) -> str | None:
    row = stored(session_factory, call_id)
    return None if row is None else row.status
