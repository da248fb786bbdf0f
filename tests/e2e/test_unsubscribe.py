"""Unsubscribing end to end: an email sent through the Gmail stand-in, its List-Unsubscribe
link followed as a mail provider (RFC 8058 one-click) or a person (the footer link) would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from handlers.slack.ids import ActionId
from integrations.crypto import LinkSigner
from storage import models as m
from tests.support.api import TEST_SECRET_KEY
from tests.support.gmail_app import (
    DANA,
    RAY,
    GmailWorld,
    connect_gmail,
    connected_gmail_world,
    google_settings,
)
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import (
    REP,
    REVIEW_CHANNEL,
    SIGNING_SECRET,
    SlackWorld,
    slack_world,
    wait_until,
)

pytestmark = pytest.mark.slow

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def world(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    google: GoogleServer,
) -> Iterator[GmailWorld]:
    with connected_gmail_world(engine, session_factory, clock, google) as built:
        yield built


def enroll(world: GmailWorld, email: str, statuses: list[str]) -> list[int]:
    """Enroll a contact in one job per status given; return the enrollment ids."""
    ids = []
    with world.session_factory() as session:
        for n, status in enumerate(statuses):
            job = m.Job(org_id=world.org_id, name=f"Job {email} {n}", status="running")
            session.add(job)
            session.flush()
            enrollment = m.Enrollment(
                org_id=world.org_id,
                job_id=job.id,
                contact_id=world.contact_ids[email],
                status=status,
            )
            session.add(enrollment)
            session.flush()
            ids.append(enrollment.id)
        session.commit()
    return ids


def enrollment_states(world: GmailWorld, ids: list[int]) -> list[tuple[str, str | None]]:
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.Enrollment).where(m.Enrollment.id.in_(ids)).order_by(m.Enrollment.id)
        ).all()
    return [(r.status, r.stop_reason) for r in rows]


def opt_out_events(world: GmailWorld, email: str) -> list[tuple[str, dict[str, Any]]]:
    """The contact's engagement history after its sends (each send is a `sent` row)."""
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.ContactEngagementEvent)
            .where(
                m.ContactEngagementEvent.contact_id == world.contact_ids[email],
                m.ContactEngagementEvent.event != "sent",
            )
            .order_by(m.ContactEngagementEvent.id)
        ).all()
    return [(r.event, dict(r.detail)) for r in rows]


def opted_out_at(world: GmailWorld, email: str) -> Any:
    with world.session_factory() as session:
        return session.scalar(select(m.Contact.opted_out_at).where(m.Contact.email == email))


def list_unsubscribe_path(raw_header_value: str) -> str:
    """The path of the https link of a List-Unsubscribe header."""
    url = re.findall(r"<(http[^>]+)>", raw_header_value)[0]
    return urlsplit(url).path


def test_one_click_post_opts_out_at_once_and_stops_every_enrollment(
    world: GmailWorld, clock: FixedClock
) -> None:
    dana_enrollments = enroll(world, DANA, ["active", "paused", "completed"])
    ray_enrollments = enroll(world, RAY, ["active"])
    assert world.send().status_code == 200
    world.set_throttle(cap=1, interval=0)
    queued = world.send(subject="Following up")
    assert queued.status_code == 202
    (sent,) = world.sent()
    path = list_unsubscribe_path(str(sent.message["List-Unsubscribe"]))

    answer = world.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert answer.status_code == 200
    assert f"{DANA} will receive no more emails from us." in answer.text
    assert opted_out_at(world, DANA) == clock.now()
    assert enrollment_states(world, dana_enrollments) == [
        ("stopped", "opted out"),
        ("stopped", "opted out"),
        ("completed", None),
    ]
    assert enrollment_states(world, ray_enrollments) == [("active", None)]
    assert opt_out_events(world, DANA) == [("opted_out", {"source": "one_click"})]
    assert [(r.status, r.error) for r in world.sends()] == [
        ("sent", None),
        ("failed", f"{DANA} opted out; nothing was sent."),
    ]
    clock.advance(minutes=5)
    assert world.drain() == 0
    refused = world.send(subject="One more")
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == (
        f"{DANA} opted out on 2026-11-25; nothing was sent."
    )
    assert len(world.sent()) == 1


def test_footer_link_shows_a_page_and_opts_out_only_when_its_button_is_pressed(
    world: GmailWorld, clock: FixedClock
) -> None:
    enrollments = enroll(world, DANA, ["active"])
    world.send()
    (sent,) = world.sent()
    plain = sent.message.get_body(("plain",))
    assert plain is not None
    footer_url = re.findall(r"unsubscribe: (\S+)", str(plain.get_content()))[0]
    path = urlsplit(footer_url).path

    page = world.client.get(path)

    assert page.status_code == 200
    assert f"Stop all emails from Lone Star Appraisals to {DANA}?" in page.text
    assert f"<form method='post' action='{path}'>" in page.text
    assert opted_out_at(world, DANA) is None
    assert enrollment_states(world, enrollments) == [("active", None)]

    pressed = world.client.post(path, data={"confirm": "yes"})

    assert pressed.status_code == 200
    assert opted_out_at(world, DANA) == clock.now()
    assert enrollment_states(world, enrollments) == [("stopped", "opted out")]
    assert opt_out_events(world, DANA) == [("opted_out", {"source": "unsubscribe_page"})]
    again = world.client.get(path)
    assert "You are already unsubscribed" in again.text


def test_forged_unsubscribe_token_is_answered_400_and_changes_nothing(world: GmailWorld) -> None:
    enrollments = enroll(world, DANA, ["active"])
    forged = LinkSigner("not-our-secret-key-0123456789-abcdefg", purpose="unsubscribe").sign(
        {"o": world.org_id, "c": world.contact_ids[DANA]}
    )
    genuine = LinkSigner(TEST_SECRET_KEY, purpose="unsubscribe").sign(
        {"o": world.org_id, "c": world.contact_ids[DANA]}
    )
    tampered = genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB")

    answers = [
        world.client.get(f"/unsubscribe/{forged}"),
        world.client.post(f"/unsubscribe/{forged}", content=b"List-Unsubscribe=One-Click"),
        world.client.post(f"/unsubscribe/{tampered}", content=b"List-Unsubscribe=One-Click"),
        world.client.post("/unsubscribe/garbage", content=b"List-Unsubscribe=One-Click"),
    ]

    assert [a.status_code for a in answers] == [400, 400, 400, 400]
    assert all("This unsubscribe link is not valid" in a.text for a in answers)
    assert opted_out_at(world, DANA) is None
    assert enrollment_states(world, enrollments) == [("active", None)]
    assert opt_out_events(world, DANA) == []


def test_repeated_one_click_records_a_single_opt_out(world: GmailWorld) -> None:
    token = LinkSigner(TEST_SECRET_KEY, purpose="unsubscribe").sign(
        {"o": world.org_id, "c": world.contact_ids[DANA]}
    )

    first = world.client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    second = world.client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")

    assert (first.status_code, second.status_code) == (200, 200)
    assert opt_out_events(world, DANA) == [("opted_out", {"source": "one_click"})]


def test_token_of_another_organization_cannot_opt_out_this_ones_contact(
    world: GmailWorld,
) -> None:
    token = LinkSigner(TEST_SECRET_KEY, purpose="unsubscribe").sign(
        {"o": world.org_id + 1000, "c": world.contact_ids[DANA]}
    )

    answer = world.client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")

    assert answer.status_code == 200
    assert opted_out_at(world, DANA) is None


# --- the whole flow from Slack ------------------------------------------------------------


@pytest.fixture
def slack(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, extra_settings=google_settings(google)
    ) as built:
        yield built


def launch_and_connect(world: SlackWorld, google: GoogleServer) -> list[Any]:
    """Launch the campaign from Slack, connect the rep's Gmail from the App Home link."""
    world.command("launch Q4 lender win-back")
    wait_until(lambda: any("Launched" in t for t in world.responses()), what="launch answer")
    world.wait_for_tasks(world.latest_job_id(), len(world.contact_ids))
    world.runtime.run_tasks_until_idle()
    with world.session_factory() as session:
        user = session.scalars(select(m.User).where(m.User.slack_user_id == REP)).one()
    assert world.runtime.gmail is not None
    link = world.runtime.gmail.gmail_connect_link(user.id, world.org_id)
    assert connect_gmail(world.client, google.google, user.email, link=link).status_code == 200
    with world.session_factory() as session:
        account = session.scalars(select(m.GmailAccount)).one()
        account.min_send_interval_seconds = 0
        session.commit()
    return world.card_messages()


def open_app_home(world: SlackWorld, event_id: str) -> Any:
    """Send app_home_opened as Slack does; return the App Home view published."""
    published = len(world.slack.calls("views.publish"))
    body = json.dumps(
        {
            "team_id": "T0SANDBOX",
            "type": "event_callback",
            "event_id": event_id,
            "event": {"type": "app_home_opened", "user": REP, "tab": "home"},
        }
    )
    headers = {**signed_headers(body, signing_secret=SIGNING_SECRET)}
    headers["content-type"] = "application/json"
    assert world.post(body, headers=headers).status_code == 200
    wait_until(lambda: len(world.slack.calls("views.publish")) > published, what="home published")
    return world.slack.home_view(REP)


def test_app_home_offers_the_signed_connect_link_then_shows_the_connected_address(
    slack: SlackWorld, google: GoogleServer
) -> None:
    home = open_app_home(slack, "Ev0GMAIL01")
    buttons = [
        element
        for block in home.blocks
        for element in block.get("elements", []) or [block.get("accessory") or {}]
        if isinstance(element, dict) and element.get("url")
    ]
    (link,) = [b["url"] for b in buttons if "/api/integrations/gmail/connect?u=" in b["url"]]

    connected = connect_gmail(slack.client, google.google, "maria@lonestar.example.com", link=link)

    assert link.startswith("http://testserver/api/integrations/gmail/connect?u=")
    assert connected.status_code == 200
    home = open_app_home(slack, "Ev0GMAIL02")
    assert "📬 Sending from *maria@lonestar.example.com*" in json.dumps(
        home.blocks, ensure_ascii=False
    )


def _steps(world: SlackWorld) -> list[int]:
    with world.session_factory() as session:
        return list(session.scalars(select(m.Enrollment.step)))


def card_state(world: SlackWorld, card_id: int) -> tuple[str, str | None]:
    with world.session_factory() as session:
        card = session.get(m.Card, card_id)
        assert card is not None
        return card.state, card.blocked_reason


def add_second_step(world: SlackWorld) -> None:
    """Give the campaign a second email (day 4), so that its cadence goes on after step 1."""
    with world.session_factory() as session:
        template = m.EmailTemplate(
            org_id=world.org_id,
            name="Win-back 2",
            category="campaign",
            subject="Following up, {{ first_name }}",
            body="Hi {{ first_name }}, any thoughts?",
            variables=[],
        )
        session.add(template)
        session.flush()
        campaign = session.get(m.MarketingCampaign, world.campaign_id)
        assert campaign is not None
        campaign.email_template_ids = [world.template_id, template.id]
        session.commit()


def test_card_approved_in_slack_is_sent_with_list_unsubscribe_and_one_click_stops_its_type(
    slack: SlackWorld, google: GoogleServer
) -> None:
    add_second_step(slack)
    messages = launch_and_connect(slack, google)
    value = slack.button(messages[0], ActionId.APPROVE)["value"]
    card_id = json.loads(value)["card"]

    slack.click(ActionId.APPROVE, value, message_ts=messages[0].ts)

    wait_until(lambda: card_state(slack, card_id)[0] == "done", what="card sent")
    (sent,) = google.google.gmail.sent("maria@lonestar.example.com")
    recipient = sent.message["To"].addresses[0].addr_spec
    assert sent.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = list_unsubscribe_path(str(sent.message["List-Unsubscribe"]))
    # Step 1 went out: the cadence goes on (step 2 due) until the one click stops it.
    wait_until(lambda: 1 in _steps(slack), what="step 1 recorded")
    answer = slack.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert answer.status_code == 200
    with slack.session_factory() as session:
        rows = session.execute(
            select(m.Contact.email, m.Enrollment.status, m.Enrollment.stop_reason)
            .join(m.Enrollment, m.Enrollment.contact_id == m.Contact.id)
            .order_by(m.Contact.email)
        ).all()
    # The one click left the email's type (a campaign email: campaign emails and their
    # follow-ups), not everything: the contact is not opted out.
    assert [tuple(r) for r in rows] == [
        (email, "stopped", "unsubscribed from campaign emails")
        if email == recipient
        else (email, "active", None)
        for email in sorted(r[0] for r in rows)
    ]
    assert recipient == "lo0@pinnacle.example.com"
    with slack.session_factory() as session:
        contact = session.scalars(select(m.Contact).where(m.Contact.email == recipient)).one()
        assert contact.opted_out_at is None
        assert contact.email_preferences["campaign"] is False


def test_card_held_by_the_daily_cap_says_so_and_is_sent_by_the_outbox_later(
    slack: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    messages = launch_and_connect(slack, google)
    with slack.session_factory() as session:
        account = session.scalars(select(m.GmailAccount)).one()
        account.daily_send_cap = 1
        session.commit()
    values = [slack.button(msg, ActionId.APPROVE)["value"] for msg in messages[:2]]
    cards = [json.loads(v)["card"] for v in values]

    slack.click(ActionId.APPROVE, values[0], message_ts=messages[0].ts)
    wait_until(lambda: card_state(slack, cards[0])[0] == "done", what="first card sent")
    slack.click(ActionId.APPROVE, values[1], message_ts=messages[1].ts)
    wait_until(lambda: card_state(slack, cards[1])[1] is not None, what="second card queued")

    assert card_state(slack, cards[0]) == ("done", None)
    assert card_state(slack, cards[1]) == (
        "executing",
        "Gmail daily cap reached (1 emails in 24 h from maria@lonestar.example.com),"
        " sending at Nov 26 15:00 UTC",
    )
    shown = wait_until(
        lambda: [
            m
            for m in slack.slack.messages(REVIEW_CHANNEL)
            if "⏳ Queued: Gmail daily cap reached" in json.dumps(m.blocks, ensure_ascii=False)
        ],
        what="card message says it is queued",
    )
    assert len(shown) == 1
    clock.advance(hours=24, seconds=1)
    assert slack.runtime.gmail is not None
    slack.runtime.gmail.outbox.run_until_idle()

    assert card_state(slack, cards[1]) == ("done", None)
    assert len(google.google.gmail.sent("maria@lonestar.example.com")) == 2
    card_message = slack.slack.messages(REVIEW_CHANNEL)[1]
    assert card_message.ts == messages[1].ts
    assert "✅ Sent by" in json.dumps(card_message.blocks, ensure_ascii=False)
