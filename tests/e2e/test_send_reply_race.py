"""100 concurrent signed "Send reply" clicks on one reply card send exactly one email, in
the contact's Gmail thread (`python -m bench send_reply_race` does 1,000 against the real
processes).

The app is served over HTTP on loopback and runs the stored clicks in its Slack replay
threads, as `salesbot serve` does; the data is committed, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine, func, select

from domain.clock import FixedClock
from handlers.slack.ids import ActionId
from sandbox.server import serve_in_thread
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from storage.models import SlackDeferredCall
from tests.e2e.test_inbound_understanding import POSITIVE, Inbound, inbound_world, labelled
from tests.support.accounts import link_slack_team
from tests.support.gmail_app import DANA, REP_EMAIL
from tests.support.google import GoogleServer, make_email
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import REP, SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

CLICKS = 100


@pytest.fixture
def committed_inbound(
    committed_engine: Engine,
    clock: FixedClock,
    google: GoogleServer,
    served_slack: ServedSlack,
) -> Iterator[tuple[Inbound, ServedSlack]]:
    """The inbound world with Slack wired, on committed data (threads see each other's work)."""
    slack = served_slack.stand_in
    slack.reset()
    slack.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    sessions = make_session_factory(committed_engine)
    settings: dict[str, object] = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }
    with inbound_world(committed_engine, sessions, clock, google, settings=settings) as built:
        with sessions() as session:
            link_slack_team(session, built.world.org_id, DEFAULT_TEAM_ID)
            job = session.get(m.Job, built.job_id)
            assert job is not None
            # The job as a launch stores it (no review channel: cards go to the owner's DM).
            job.params = {
                "target": {"contact_ids": [built.world.contact_ids[DANA]]},
                "templates": [{"subject": "Turn times", "body": "Hi {{ first_name }}"}],
            }
            session.commit()
        yield built, served_slack


def _click_body(value: str, *, channel: str, ts: str, n: int) -> str:
    payload = {
        "type": "block_actions",
        "team": {"id": DEFAULT_TEAM_ID, "domain": "sandbox-appraisals"},
        "user": {"id": REP, "username": "maria", "team_id": DEFAULT_TEAM_ID},
        "api_app_id": "A0SANDBOXAPP",
        "token": "deprecated",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "directmessage"},
        "actions": [
            {
                "type": "button",
                "action_id": ActionId.APPROVE.value,
                "block_id": "card_actions",
                "value": value,
                "action_ts": f"{time.time():.6f}{n:03d}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def _send_reply_value(message: Any) -> str:
    (value,) = [
        str(element["value"])
        for block in message.blocks
        for element in block.get("elements", []) or []
        if element.get("action_id") == ActionId.APPROVE.value
    ]
    return value


def test_concurrent_send_reply_clicks_on_one_reply_card_send_one_email_in_the_thread(
    committed_inbound: tuple[Inbound, ServedSlack],
) -> None:
    inbound, served = committed_inbound
    world = inbound.world
    dana_says = "<race-reply@mail.pinnacle.example>"
    inbound.deliver(
        make_email(
            sender=DANA,
            to=REP_EMAIL,
            subject="Re: Turn times",
            body=labelled(POSITIVE)["body"],
            in_reply_to=inbound.send_message_id,
            references=[inbound.send_message_id],
            message_id=dana_says,
        )
    )
    world.runtime.run_tasks_until_idle()
    with inbound.sessions() as session:
        (card,) = session.scalars(select(m.Card)).all()
    assert (card.type, card.state) == ("reply_to_email", "in_review")
    (message,) = served.stand_in.messages(REP)
    value = _send_reply_value(message)
    channel = str(card.slack_channel_id)
    before = len(world.sent())
    bodies = [_click_body(value, channel=channel, ts=message.ts, n=n) for n in range(CLICKS)]

    server = serve_in_thread(world.client.app)
    replay = world.runtime.slack_worker
    assert replay is not None
    replay.start()
    try:
        with httpx.Client(
            base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=CLICKS)
        ) as client:

            def click(body: str) -> int:
                headers = signed_headers(body, signing_secret=SIGNING_SECRET)
                return client.post(
                    "/slack/events", content=body.encode(), headers=headers
                ).status_code

            with ThreadPoolExecutor(CLICKS) as pool:
                statuses = list(pool.map(click, bodies))

        def all_run() -> bool:
            with inbound.sessions() as session:
                return not session.scalar(select(func.count()).select_from(SlackDeferredCall))

        wait_until(all_run, timeout=120, what="every stored click run")
    finally:
        replay.stop()
        server.stop()
    world.drain()

    assert statuses == [200] * CLICKS
    sent = world.sent()[before:]
    assert len(sent) == 1
    (answer,) = sent
    assert answer.thread_id == inbound.send_thread_id
    assert answer.message["In-Reply-To"] == dana_says
    assert answer.message["References"].split() == [inbound.send_message_id, dana_says]
    refusals = [
        call
        for call in served.stand_in.calls("chat.postEphemeral")
        if call.params.get("user") == REP
    ]
    assert len(refusals) == CLICKS - 1  # every other click was told why nothing was done
    with inbound.sessions() as session:
        done = session.get(m.Card, card.id)
        rows = session.scalar(
            select(func.count()).select_from(m.EmailSend).where(m.EmailSend.card_id == card.id)
        )
    assert done is not None
    assert (done.state, rows) == ("done", 1)
