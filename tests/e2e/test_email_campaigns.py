"""`email_campaigns` through the product's own paths, on SQLite and PostgreSQL: a campaign
launched from Slack, its cards approved and sent through the Gmail stand-in, then an
opt-out from the email's footer link, a reply and a hard bounce pushed through the inbound
pipeline. After each, the table (its REST route, and the rows the sweep writes) equals the
analytics route's figures by step over the campaign's whole life (the route without
since/until: the table holds all-time totals)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, func, select

from domain.clock import FixedClock
from domain.email_campaigns import REFRESH_EVERY, SEND_GRACE
from domain.engagement import REPLY_EVENTS
from handlers.slack.ids import ActionId
from jobs.email_campaigns import EmailCampaignsRefresh
from sandbox.pubsub import DEFAULT_PUSH_SERVICE_ACCOUNT
from storage import models as m
from storage.uow import UnitOfWork
from tests.e2e.test_unsubscribe import card_state, launch_and_connect
from tests.support.accounts import create_token
from tests.support.corpus import corpus_dir
from tests.support.gmail_app import google_settings
from tests.support.google import GoogleServer, make_email
from tests.support.slack import ServedSlack
from tests.support.slack_app import SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

AUDIENCE = "https://salesbot.example.com/api/integrations/gmail/push"
REP_EMAIL = "maria@lonestar.example.com"
FIELDS = ("sent", "delivered", "unsubscribed", "replied")


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    extra = {
        **google_settings(google),
        "PUBSUB_AUDIENCE": AUDIENCE,
        "PUBSUB_SERVICE_ACCOUNT": DEFAULT_PUSH_SERVICE_ACCOUNT,
    }
    with slack_world(committed_engine, served_slack, clock, extra_settings=extra) as built:
        yield built


def token(world: SlackWorld) -> dict[str, str]:
    with world.session_factory() as session:
        _, secret = create_token(session, world.org_id, name="email-campaigns")
        session.commit()
    return {"Authorization": f"Bearer {secret}"}


def get(world: SlackWorld, auth: dict[str, str], path: str) -> Any:
    answer = world.client.get(path, headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


def analytics_steps(world: SlackWorld, auth: dict[str, str]) -> dict[Any, dict[str, int]]:
    steps = get(world, auth, f"/api/marketing/campaigns/{world.campaign_id}/analytics")["steps"]
    return {
        s["step"]: {**{f: s[f] for f in FIELDS}, "bounced": s["bounced_hard"]}
        for s in steps
        if s["sent"] or s["bounced_hard"] or s["unsubscribed"] or s["replied"]
    }


def table_steps(rows: list[Any]) -> dict[Any, dict[str, int]]:
    return {r["step"]: {f: r[f] for f in (*FIELDS, "bounced")} for r in rows}


def assert_agree(
    world: SlackWorld, auth: dict[str, str], expected: dict[str, int], *, dated_now: bool = True
) -> None:
    """The rows the sweep stores right after a send or an event (which makes its campaign
    due: docs) equal the analytics route's by step, and what the scenario has done so far
    (step 0); the route's rows (refreshed on read) equal them too.

    The windows end just before now: the clock moves past the latest event first, so what
    just happened is in them (the Gmail stand-in dates a message it receives by the wall
    clock, ahead of the test's)."""
    clock = world.runtime.services.clock
    assert isinstance(clock, FixedClock)
    with world.session_factory() as session:
        latest = session.scalar(select(func.max(m.ContactEngagementEvent.occurred_at)))
    assert latest is not None
    clock.advance(seconds=max(0.0, (latest - clock.now()).total_seconds()) + 1)
    if not dated_now:
        # An event dated long ago (the corpus's bounce report is from 2014) is not seen as
        # new activity: the campaign is refreshed once its rows are REFRESH_EVERY old.
        clock.advance(seconds=REFRESH_EVERY.total_seconds())
    sweep = EmailCampaignsRefresh(
        lambda: UnitOfWork(world.session_factory), world.session_factory, clock
    )
    assert sweep.run_once() == 1
    with UnitOfWork(world.session_factory) as uow:
        swept = uow.email_campaigns.rows(world.org_id, [world.campaign_id])
    analytics = analytics_steps(world, auth)
    assert table_steps([r.model_dump() for r in swept]) == analytics == {0: expected}
    # Within SEND_GRACE of the activity it is refreshed again (a send may commit late);
    # after that, nothing new makes it due before REFRESH_EVERY.
    clock.advance(seconds=SEND_GRACE.total_seconds() + 1)
    sweep.run_once()
    assert sweep.run_once() == 0

    routed = get(world, auth, f"/api/marketing/campaigns/{world.campaign_id}/email-campaigns")
    assert table_steps(routed) == analytics
    clock.advance(seconds=REFRESH_EVERY.total_seconds())
    assert sweep.run_once() == 1  # stale after REFRESH_EVERY whatever happened


def push(world: SlackWorld, google: GoogleServer, raw: bytes) -> None:
    google.google.gmail.deliver(REP_EMAIL, raw)
    headers, body = google.google.push_request(REP_EMAIL, audience=AUDIENCE)
    answer = world.client.post("/api/integrations/gmail/push", json=body, headers=headers)
    assert answer.status_code == 204, answer.text
    world.client.app.state.gmail_inbound.processor.run_pending()  # type: ignore[attr-defined]
    world.runtime.inbound_worker.run_until_idle()


def events(world: SlackWorld, name: str) -> int:
    with world.session_factory() as session:
        return len(
            session.scalars(
                select(m.ContactEngagementEvent.id).where(m.ContactEngagementEvent.event == name)
            ).all()
        )


def test_the_table_equals_the_campaigns_analytics_after_every_send_opt_out_reply_and_bounce(
    world: SlackWorld, google: GoogleServer
) -> None:
    auth = token(world)
    messages = launch_and_connect(world, google)
    assert len(messages) == 3
    for n, message in enumerate(messages):
        value = world.button(message, ActionId.APPROVE)["value"]
        world.click(ActionId.APPROVE, value, message_ts=message.ts)
        card_id: int = json.loads(value)["card"]

        def sent_card(card: int = card_id) -> bool:
            return card_state(world, card)[0] == "done"

        wait_until(sent_card, what="card sent")
        assert_agree(
            world,
            auth,
            {"sent": n + 1, "delivered": n + 1, "unsubscribed": 0, "replied": 0, "bounced": 0},
        )
    sent = {
        s.message["To"].addresses[0].addr_spec: s.message
        for s in google.google.gmail.sent(REP_EMAIL)
    }
    assert sorted(sent) == [f"lo{n}@pinnacle.example.com" for n in range(3)]

    # lo0 opts out from the footer link of the email (names no send: counts for her last).
    plain = sent["lo0@pinnacle.example.com"].get_body(("plain",))
    assert plain is not None
    footer = re.findall(r"unsubscribe: (\S+)", str(plain.get_content()))[0]
    pressed = world.client.post(urlsplit(footer).path, data={"confirm": "yes"})
    assert pressed.status_code == 200
    assert_agree(
        world, auth, {"sent": 3, "delivered": 3, "unsubscribed": 1, "replied": 0, "bounced": 0}
    )

    # lo1 replies in the thread: through push, sync and the pipeline.
    original = sent["lo1@pinnacle.example.com"]
    push(
        world,
        google,
        make_email(
            sender="lo1@pinnacle.example.com",
            to=REP_EMAIL,
            subject=f"Re: {original['Subject']}",
            body="Thanks Maria, yes please send me your fee schedule and turn times.",
            in_reply_to=str(original["Message-ID"]),
            references=[str(original["Message-ID"])],
            date=world.runtime.services.clock.now(),
        ),
    )
    wait_until(
        lambda: sum(events(world, e.value) for e in REPLY_EVENTS) == 1, what="reply recorded"
    )
    assert_agree(
        world, auth, {"sent": 3, "delivered": 3, "unsubscribed": 1, "replied": 1, "bounced": 0}
    )

    # lo2's address bounces hard (a Postfix DSN naming her address).
    dsn = (corpus_dir() / "bounces/sisimai/lhost-postfix-03.eml").read_bytes()
    push(world, google, dsn.replace(b"kijitora@example.net", b"lo2@pinnacle.example.com"))
    wait_until(lambda: events(world, "bounced") == 1, what="bounce recorded", timeout=20)
    assert_agree(
        world,
        auth,
        {"sent": 3, "delivered": 2, "unsubscribed": 1, "replied": 1, "bounced": 1},
        dated_now=False,
    )
