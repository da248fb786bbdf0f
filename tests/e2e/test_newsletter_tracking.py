"""Opens and clicks of a newsletter issue, for an organization that tracks them: the issue is
planned with the pixel and redirecting links in each subscriber's HTML part, the outbox sends
it to the Gmail stand-in, the pixels and links of the emails received there are fetched
through the app as mail clients, browsers and bots fetch them, and the issue's numbers by
REST count the people (contacts), not the bots. Tracking turned off, they are null with
the note saying why."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from handlers.api.tracking import PIXEL_GIF
from handlers.slack.ids import ActionId
from storage import models as m
from tests.e2e.test_newsletters import (
    MARIA,
    connect,
    issue_row,
    newsletter_card,
    submitted_issue,
)
from tests.support.gmail_app import google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

SETTINGS = "/api/marketing/analytics-settings"
RATES = "https://pinnacle.example/rates?county=travis&days=5"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
APPLE_PRIVACY = "Mozilla/5.0"
SCANNER = "Barracuda Sentinel (EE)"
CURL = "curl/8.5.0"
TRACKING_OFF = (
    "opens and clicks are not tracked: the organization's tracking is off"
    " (PUT /api/marketing/analytics-settings)"
)


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=5, extra_settings=google_settings(google)
    ) as built:
        yield built


def turn_tracking(world: SlackWorld, *, opens: bool, clicks: bool) -> None:
    """Set the organization's tracking with its organization-wide token (as an admin)."""
    answer = world.client.put(
        SETTINGS,
        json={"tracking": {"opens": opens, "clicks": clicks}},
        headers={"Authorization": f"Bearer {world.api_token}"},
    )
    assert answer.status_code == 200, answer.text


def send_an_issue(world: SlackWorld, google: GoogleServer, clock: FixedClock) -> tuple[str, int]:
    """Make, approve, plan and send an issue with a link to the five subscribers; return the
    issue's URL and its id."""
    maria, token = connect(world, google, MARIA, "Maria Lopez")
    with world.session_factory() as session:
        account = session.scalars(select(m.GmailAccount).where(m.GmailAccount.email == MARIA)).one()
        account.daily_send_cap = 48  # 24 a day at the newsletter's 50 %: one an hour
        session.commit()
    auth = {"Authorization": f"Bearer {token}"}
    runtime = world.runtime
    assert runtime.newsletter_sweep is not None
    assert runtime.gmail is not None
    base, issue = submitted_issue(
        world,
        auth,
        [maria],
        subject_template="{{ newsletter_name }}: turn times",
        text_template="Hi {{ first_name }}, our rates: {{ rates }}",
        html_template="<p>Hi {{ first_name }}, our <a href='{{ rates }}'>rates</a>.</p>",
        variables={"rates": RATES},
    )
    message = newsletter_card(world)
    value = world.button(message, ActionId.NEWSLETTER_APPROVE)["value"]
    world.click(ActionId.NEWSLETTER_APPROVE, value, message_ts=message.ts, user=REP)
    wait_until(lambda: issue_row(world, issue["id"]).status == "scheduled", what="scheduled")
    runtime.newsletter_sweep.run_once()
    assert issue_row(world, issue["id"]).planned_count == 5
    for _ in range(8):
        runtime.gmail.outbox.run_once()
        clock.advance(hours=1)
    runtime.newsletter_sweep.run_once()
    assert issue_row(world, issue["id"]).status == "sent"
    assert len(google.google.gmail.sent(MARIA)) == 5
    return f"{base}/{issue['id']}", issue["id"]


def received(google: GoogleServer, to: str) -> EmailMessage:
    """The issue as the subscriber's mailbox received it."""
    (found,) = [s.message for s in google.google.gmail.sent(MARIA) if to in str(s.message["To"])]
    return found


def html_part(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("html",))
    assert body is not None
    return str(body.get_content())


def tracked_urls(message: EmailMessage) -> tuple[str, str]:
    """The pixel's and the link's paths in a received email's HTML part."""
    root = lxml.html.document_fromstring(html_part(message))
    (pixel,) = [str(i.get("src")) for i in root.iter("img") if "/t/o/" in str(i.get("src"))]
    (link,) = [str(a.get("href")) for a in root.iter("a") if "/t/c/" in str(a.get("href"))]
    return urlsplit(pixel).path, urlsplit(link).path


def fetch(world: SlackWorld, path: str, agent: str) -> Any:
    return world.client.get(path, headers={"User-Agent": agent}, follow_redirects=False)


def test_opens_and_clicks_of_a_tracked_issue_count_people_not_bots(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    turn_tracking(world, opens=True, clicks=True)
    url, issue_id = send_an_issue(world, google, clock)
    with world.session_factory() as session:
        flags = session.scalars(
            select(m.EmailSend.tracked).where(m.EmailSend.newsletter_issue_id == issue_id)
        ).all()
    assert flags == [True] * 5
    message = received(google, "lo0@pinnacle.example.com")
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert RATES in str(text.get_content())

    clock.advance(minutes=5)  # long after the delivery: not a prefetch
    fetched: dict[str, tuple[str, str]] = {}
    for n in range(5):
        fetched[f"lo{n}"] = tracked_urls(received(google, f"lo{n}@pinnacle.example.com"))
    # Lo0 reads it in Gmail (twice) and clicks the link in her browser.
    for agent in (GMAIL_PROXY, GMAIL_PROXY):
        answer = fetch(world, fetched["lo0"][0], agent)
        assert (answer.status_code, answer.content) == (200, PIXEL_GIF)
    clicked = fetch(world, fetched["lo0"][1], CHROME)
    assert (clicked.status_code, clicked.headers["location"]) == (302, RATES)
    # Lo1 reads it in Thunderbird.
    assert fetch(world, fetched["lo1"][0], THUNDERBIRD).status_code == 200
    # Lo2's Apple Mail fetches the pixel on delivery and her gateway scans the link: bots.
    assert fetch(world, fetched["lo2"][0], APPLE_PRIVACY).status_code == 200
    assert fetch(world, fetched["lo2"][1], SCANNER).status_code == 302
    # A crawler fetches lo3's pixel and link: bots too.
    assert fetch(world, fetched["lo3"][0], CURL).status_code == 200
    assert fetch(world, fetched["lo3"][1], CURL).status_code == 302

    with world.session_factory() as session:
        e = m.EmailTrackingEvent
        kept = session.execute(select(e.kind, e.by_bot, e.bot_reason, e.hits)).all()
    assert sorted((k, b, r, h) for k, b, r, h in kept) == sorted(
        [
            ("open", False, None, 2),
            ("click", False, None, 1),
            ("open", False, None, 1),
            ("open", True, "apple_privacy", 1),
            ("click", True, "link_scanner", 1),
            ("open", True, "crawler", 1),
            ("click", True, "crawler", 1),
        ]
    )
    auth = {"Authorization": f"Bearer {world.api_token}"}
    metrics = world.client.get(url, headers=auth).json()["metrics"]
    assert (metrics["sent"], metrics["opened"], metrics["clicked"]) == (5, 2, 1)
    assert metrics["tracking_note"] is None

    # Opens only: clicks are not counted, and the note says so.
    turn_tracking(world, opens=True, clicks=False)
    metrics = world.client.get(url, headers=auth).json()["metrics"]
    assert (metrics["opened"], metrics["clicked"]) == (2, None)
    assert metrics["tracking_note"] == "only what the organization tracks is counted"
    # Tracking off: nothing is counted, and the note says why.
    turn_tracking(world, opens=False, clicks=False)
    metrics = world.client.get(url, headers=auth).json()["metrics"]
    assert (metrics["opened"], metrics["clicked"]) == (None, None)
    assert metrics["tracking_note"] == TRACKING_OFF


def test_an_issue_planned_with_tracking_off_carries_no_pixel_and_counts_nothing(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    url, issue_id = send_an_issue(world, google, clock)
    with world.session_factory() as session:
        flags = session.scalars(
            select(m.EmailSend.tracked).where(m.EmailSend.newsletter_issue_id == issue_id)
        ).all()
    assert flags == [False] * 5
    html = html_part(received(google, "lo0@pinnacle.example.com"))
    assert "/t/o/" not in html
    assert "/t/c/" not in html
    root = lxml.html.document_fromstring(html)
    assert [a.get("href") for a in root.iter("a") if "rates" in (a.text or "")] == [RATES]
    metrics = world.client.get(url, headers={"Authorization": f"Bearer {world.api_token}"}).json()[
        "metrics"
    ]
    assert (metrics["opened"], metrics["clicked"]) == (None, None)
    assert metrics["tracking_note"] == TRACKING_OFF
