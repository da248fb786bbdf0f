"""The triage channel over REST (/api/inbound/triage), on SQLite and PostgreSQL: anyone of
the organization reads it with the routing order; admins and organization-wide tokens set
it (checked against the Slack stand-in) or clear it with null; reps are refused; garbage
is refused with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.reply_routing import ROUTING_FALLBACK
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.api import ApiWorld, make_api_world
from tests.support.slack import ServedSlack

SessionFactory = Callable[[], Session]
TRIAGE = "/api/inbound/triage"
REPLIES = "C0TRIAGE01"
OUTSIDE = "C0OUTSIDE1"
ARCHIVED = "C0ARCHIVE1"


@pytest.fixture
def api(
    engine: Engine, session_factory: SessionFactory, clock: FixedClock, served_slack: ServedSlack
) -> ApiWorld:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_channel(REPLIES, "replies")
    slack.add_channel(OUTSIDE, "sales-floor", is_member=False)
    slack.add_channel(ARCHIVED, "old-replies", is_archived=True)
    settings = {"SLACK_API_URL": served_slack.api_url, "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN}
    return make_api_world(engine, session_factory, clock, start_background=False, settings=settings)


def token_of(api: ApiWorld, session_factory: SessionFactory, role: UserRole) -> dict[str, str]:
    with session_factory() as session:
        user_id = ensure_user(session, api.org_id, email=f"{role.value}@lonestar.test", role=role)
        _, token = create_token(session, api.org_id, name=role.value, user_id=user_id)
        session.commit()
    return api.auth(token)


def put(api: ApiWorld, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return api.client.put(TRIAGE, json=body, headers=headers or api.auth())


def stored(session_factory: SessionFactory, org_id: int) -> str | None:
    with session_factory() as session:
        return session.scalar(
            select(m.Organization.triage_channel_id).where(m.Organization.id == org_id)
        )


def test_an_admin_sets_the_triage_channel_and_anyone_of_the_org_reads_it(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    shown = api.client.get(TRIAGE, headers=api.auth(api.read_token))
    assert shown.status_code == 200
    assert shown.json() == {
        "channel_id": None,
        "routing": [
            "the DM of the rep whose mailbox received the reply (else who launched the campaign)",
            "the campaign's review channel",
            "the triage channel (none set: `/triage set #channel`)",
        ],
        "notes": [ROUTING_FALLBACK],
        "warning": None,
        "reposted": 0,
    }

    changed = put(
        api, {"channel_id": f"<#{REPLIES}|replies>"}, token_of(api, session_factory, UserRole.ADMIN)
    )

    assert changed.status_code == 200
    assert (changed.json()["channel_id"], changed.json()["warning"]) == (REPLIES, None)
    assert changed.json()["routing"][2] == f"the triage channel <#{REPLIES}>"
    assert api.client.get(TRIAGE, headers=api.auth(api.read_token)).json()["channel_id"] == REPLIES
    assert api.client.get(TRIAGE, headers=api.auth(api.other_token)).json()["channel_id"] is None
    assert stored(session_factory, api.org_id) == REPLIES


def test_a_channel_salesbot_is_not_in_is_set_with_a_warning_and_null_clears_it(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    warned = put(api, {"channel_id": OUTSIDE})

    assert warned.status_code == 200
    assert warned.json()["warning"] == (
        f"Salesbot is not in <#{OUTSIDE}>: /invite @Salesbot there so cards can be posted."
    )
    cleared = put(api, {"channel_id": None})
    assert (cleared.status_code, cleared.json()["channel_id"]) == (200, None)
    assert stored(session_factory, api.org_id) is None


def test_a_rep_token_is_refused_and_nothing_changes(
    api: ApiWorld, session_factory: SessionFactory
) -> None:
    refused = put(api, {"channel_id": REPLIES}, token_of(api, session_factory, UserRole.REP))
    read_only = put(api, {"channel_id": REPLIES}, api.auth(api.read_token))

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "Only an admin can change the triage channel; ask an admin of your organization."
    )
    assert read_only.status_code == 403
    assert stored(session_factory, api.org_id) is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"channel_id": ARCHIVED}, "is archived"),
        ({"channel_id": "D0123ABCD"}, "a direct message cannot be the triage channel"),
        ({"channel_id": "#replies"}, "name a channel"),
        ({"channel_id": ""}, "invalid request"),
        ({}, "invalid request"),
        ({"channel_id": REPLIES, "surprise": 1}, "invalid request"),
    ],
)
def test_garbage_or_an_archived_channel_is_refused_with_the_reason(
    api: ApiWorld, session_factory: SessionFactory, body: dict[str, Any], says: str
) -> None:
    refused = put(api, body)

    assert refused.status_code == 422
    assert says in refused.json()["error"]["message"]
    assert stored(session_factory, api.org_id) is None
