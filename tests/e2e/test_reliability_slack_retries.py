"""Slack's retries and a rep's double clicks landing on two different `salesbot web`
processes, with one `salesbot worker`, on PostgreSQL: an event Slack retried
(X-Slack-Retry-Num 1 and 2, `http_timeout`) is processed once, and Approve clicked twice on
each of several cards, the clicks split between the two processes and sent at once, sends
each card's email once.

Each web process verifies, stores and acks a request; the worker runs what they stored
(the durable ack path). The processes are forked from one that imported Salesbot once
(tests/support/forkserver.py); Slack and Gmail are the stand-ins served by this test.
The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from sqlalchemy import Engine, select

from domain.cards import draft_fingerprint
from sandbox.server import free_port
from sandbox.slack_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID
from storage import models as m
from storage.db import make_session_factory
from tests.e2e.test_crash_recovery import REP_EMAIL, _connect_gmail, forks
from tests.support.accounts import create_org, create_token, ensure_user, link_slack_team
from tests.support.api import make_settings
from tests.support.builders import make_contact
from tests.support.forkserver import ForkServer
from tests.support.gmail_app import google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack, approve_click_body, signed_headers
from tests.support.slack_app import SIGNING_SECRET, wait_until

pytestmark = pytest.mark.slow

__all__ = ["forks"]

REP = "U0RETRY01"
CARDS = 5
CLICKS_PER_CARD = 2


def _seed(engine: Engine) -> tuple[str, list[tuple[int, str, str]]]:
    """The rep's org with a running job and CARDS email cards in review; return the rep's
    API token and (card id, fingerprint, address) of each card."""
    now = datetime.now(UTC)
    cards = []
    with make_session_factory(engine)() as session:
        org = create_org(session, slug="lonestar", name="Lone Star Appraisals")
        link_slack_team(session, org.id, DEFAULT_TEAM_ID)
        rep_id = ensure_user(session, org.id, email=REP_EMAIL, name="Maria Lopez")
        rep = session.get(m.User, rep_id)
        org_row = session.get(m.Organization, org.id)
        assert rep is not None
        assert org_row is not None
        rep.slack_user_id = REP
        _, token = create_token(session, org.id, name="rep", user_id=rep_id)
        job = m.Job(
            org_id=org.id,
            owner_id=rep_id,
            name="Win-back",
            status="running",
            started_at=now,
            planned_at=now,
        )
        session.add(job)
        session.flush()
        for n in range(CARDS):
            person = make_contact(session, org_row, email=f"lo{n}@pinnacle.example")
            subject, body = "Turn times are down", f"Hi Lo{n}, our turn times are down."
            card = m.Card(
                org_id=org.id,
                job_id=job.id,
                contact_id=person.id,
                type="send_email",
                state="in_review",
                title=f"Email Lo{n}",
                action_payload={"to": person.email, "subject": subject, "body": body},
                draft_fingerprint=draft_fingerprint(to=person.email, subject=subject, body=body),
                created_at=now,
                updated_at=now,
            )
            session.add(card)
            session.flush()
            cards.append((card.id, card.draft_fingerprint or "", person.email))
        session.commit()
    return token, cards


def _click(card_id: int, fingerprint: str, n: int) -> str:
    """A click of Approve as Slack posts it: each click its own trigger and action time."""
    payload = json.loads(parse_qs(approve_click_body(card_id, fingerprint, user=REP))["payload"][0])
    payload["trigger_id"] = f"{card_id}.{n}.retry"
    payload["actions"][0]["action_ts"] = f"{time.time():.6f}{n}"
    return urlencode({"payload": json.dumps(payload)})


@pytest.fixture
def processes(
    committed_engine: Engine,
    served_slack: ServedSlack,
    google: GoogleServer,
    forks: ForkServer,
    tmp_path: Path,
) -> Iterator[tuple[list[str], list[tuple[int, str, str]]]]:
    """Two web processes (their URLs) and a worker, on a seeded database; the cards."""
    served_slack.stand_in.reset()
    served_slack.stand_in.add_user(REP, "maria", REP_EMAIL, real_name="Maria Lopez")
    token, cards = _seed(committed_engine)
    url = committed_engine.url.render_as_string(hide_password=False)
    settings = {
        "SLACK_API_URL": served_slack.api_url,
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        **{k: str(v) for k, v in google_settings(google).items()},
    }
    _connect_gmail(committed_engine, settings, google, token)
    env = {
        **os.environ,
        **settings,
        "DATABASE_URL": url,
        "SALESBOT_SECRET_KEY": make_settings(url).SALESBOT_SECRET_KEY,
        "PUBLIC_BASE_URL": "http://testserver",
        "SLACK_POST_INTERVAL_SECONDS": "0",
        "WORKER_POLL_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    ports = [free_port(), free_port()]
    pids = [
        forks.start(["web", "--port", str(port)], env=env, log=tmp_path / f"web-{port}.log")
        for port in ports
    ]
    pids.append(forks.start(["worker", "--nice", "0"], env=env, log=tmp_path / "worker.log"))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base in urls:

            def healthy(base: str = base) -> bool:
                try:
                    return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(healthy, timeout=60, what=f"salesbot web at {base}")
        yield urls, cards
    finally:
        for pid in pids:
            if forks.poll(pid) is None:
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            if forks.wait(pid, timeout=60) is None:
                os.kill(pid, signal.SIGKILL)
                forks.wait(pid, timeout=10)


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_retries_and_double_clicks_across_two_web_processes_act_once(
    processes: tuple[list[str], list[tuple[int, str, str]]],
    served_slack: ServedSlack,
    google: GoogleServer,
    committed_engine: Engine,
) -> None:
    urls, cards = processes
    slack = served_slack.stand_in
    # An event, then Slack's two retries of it (it missed the first answer), each to the
    # other process.
    event = json.dumps(
        {
            "token": "deprecated",
            "team_id": DEFAULT_TEAM_ID,
            "api_app_id": "A0SANDBOXAPP",
            "type": "event_callback",
            "event_id": "Ev0RETRY01",
            "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": REP, "channel": "D0MARIA", "tab": "home"},
        }
    )
    headers = {
        **signed_headers(event, signing_secret=SIGNING_SECRET),
        "content-type": "application/json",
    }
    deliveries = [
        (urls[0], headers),
        *(
            (
                urls[retry % 2],
                {
                    **headers,
                    "x-slack-retry-num": str(retry),
                    "x-slack-retry-reason": "http_timeout",
                },
            )
            for retry in (1, 2)
        ),
    ]
    with ThreadPoolExecutor(len(deliveries)) as pool:
        answers = list(
            pool.map(
                lambda d: (
                    httpx.post(f"{d[0]}/slack/events", content=event, headers=d[1]).status_code
                ),
                deliveries,
            )
        )
    assert answers == [200, 200, 200]
    # Approve clicked twice on each card, the two clicks on different processes, all at once.
    clicks = [
        (urls[n % 2], _click(card_id, fingerprint, n))
        for card_id, fingerprint, _ in cards
        for n in range(CLICKS_PER_CARD)
    ]

    def post(click: tuple[str, str]) -> int:
        base, body = click
        return httpx.post(
            f"{base}/slack/events",
            content=body.encode(),
            headers=signed_headers(body, signing_secret=SIGNING_SECRET),
            timeout=30,
        ).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(len(clicks)) as pool:
        acked = list(pool.map(post, clicks))
    assert acked == [200] * len(clicks)
    sessions = make_session_factory(committed_engine)

    def states() -> Counter[str]:
        with sessions() as session:
            return Counter(session.scalars(select(m.Card.state)))

    wait_until(lambda: states() == Counter({"done": CARDS}), timeout=60, what="every card sent")
    wait_until(lambda: slack.calls("views.publish"), timeout=30, what="the home tab published")
    settled = time.monotonic() - started
    time.sleep(1.0)  # time for a second send or a second publication to show, if any

    sent = Counter(parseaddr(str(s.message["To"]))[1] for s in google.google.gmail.sent(REP_EMAIL))
    duplicates = sum(n - 1 for n in sent.values())
    refused = len(slack.calls("chat.postEphemeral"))
    print(
        f"\nSlack retries across 2 web processes: 1 event delivered 3 times →"
        f" {len(slack.calls('views.publish'))} home publication;"
        f" {len(clicks)} Approve clicks on {CARDS} cards split between the processes →"
        f" {sum(sent.values())} emails, {duplicates} duplicates, {refused} clicks told why"
        f" they did nothing; all sent {settled:.1f} s after the clicks"
    )
    assert len(slack.calls("views.publish")) == 1
    assert sent == Counter({email: 1 for _, _, email in cards})
    assert states() == Counter({"done": CARDS})
