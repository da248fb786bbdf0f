"""Email-type preferences end to end: Slack, the app, the Gmail stand-in, the unsubscribe
page over HTTP and the REST API.

A two-step campaign (day 0 and day 4) is launched from Slack for one contact, Dana. Her
choices are made as she would make them (the unsubscribe page's buttons, a mail
provider's one-click) or as a rep would (REST), and what Salesbot then drafts and sends
is checked in Slack and in the rep's mailbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.email_preferences import EmailType
from storage import models as m
from tests.e2e.test_cadence_last_look import (
    DANA,
    REP_EMAIL,
    STEP_TWO_DUE,
    approve,
    card,
    connect_rep_gmail,
    enrollment,
    follow_up_cards,
    launch_and_send_step_one,
    two_step_campaign,
)
from tests.support.accounts import create_token
from tests.support.gmail_app import google_settings, unsubscribe_url
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=1, extra_settings=google_settings(google)
    ) as built:
        two_step_campaign(built)
        connect_rep_gmail(built, google)
        yield built


@pytest.fixture
def world_of_two(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=2, extra_settings=google_settings(google)
    ) as built:
        yield built


def dana(world: SlackWorld) -> m.Contact:
    with world.session_factory() as session:
        return session.scalars(select(m.Contact).where(m.Contact.email == DANA)).one()


def history(world: SlackWorld) -> list[dict[str, Any]]:
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.ContactEngagementEvent)
            .where(m.ContactEngagementEvent.event == "email_preference")
            .order_by(m.ContactEngagementEvent.id)
        )
        return [dict(r.detail) for r in rows]


def path_of(url: str) -> str:
    return urlsplit(url).path


def api_token(world: SlackWorld) -> dict[str, str]:
    with world.session_factory() as session:
        _, token = create_token(session, world.org_id, name="prefs")
        session.commit()
    return {"Authorization": f"Bearer {token}"}


def test_a_campaign_launched_after_the_contact_turned_campaign_emails_off_has_no_card_for_them(
    world_of_two: SlackWorld,
) -> None:
    world = world_of_two
    headers = api_token(world)
    put = world.client.put(
        f"/api/contacts/{dana(world).id}/email-preferences",
        json={"campaign": False},
        headers=headers,
    )
    assert put.status_code == 200

    world.command("launch Q4 lender win-back")

    answer = wait_until(
        lambda: next((t for t in world.responses() if "Launched" in t), None), what="launch"
    )
    assert "1 contacts in the audience" in answer
    world.wait_for_tasks(world.latest_job_id(), 1)
    world.runtime.run_tasks_until_idle()
    with world.session_factory() as session:
        enrolled = session.scalars(
            select(m.Contact.email).join(m.Enrollment, m.Enrollment.contact_id == m.Contact.id)
        ).all()
        carded = session.scalars(
            select(m.Contact.email).join(m.Card, m.Card.contact_id == m.Contact.id)
        ).all()
    assert enrolled == ["lo1@pinnacle.example.com"]
    assert carded == ["lo1@pinnacle.example.com"]
    assert len(world.card_messages()) == 1


def test_only_follow_ups_from_the_page_stops_the_follow_up_the_tick_would_send(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    launch_and_send_step_one(world, google)
    # The page of a follow-up's link (the link signed as the app signs a follow-up's).
    path = path_of(unsubscribe_url(world.org_id, dana(world).id, EmailType.FOLLOW_UP))
    page = world.client.get(path)
    assert page.status_code == 200
    assert "Unsubscribe from follow-up emails only" in page.text
    assert "Unsubscribe from everything" in page.text

    pressed = world.client.post(path, data={"action": "type"})

    assert pressed.status_code == 200
    assert "You are unsubscribed from follow-up emails" in pressed.text
    assert "Follow-up emails: <strong>no</strong>" in pressed.text
    assert "Subscribe again to follow-up emails" in pressed.text
    stopped = enrollment(world)
    assert (stopped.status, stopped.stop_reason) == ("stopped", "unsubscribed from follow-ups")
    assert dana(world).opted_out_at is None
    assert history(world) == [
        {"email_type": "follow_up", "subscribed": False, "source": "unsubscribe_page"}
    ]

    clock._at = STEP_TWO_DUE
    assert world.runtime.outreach.cadences.tick().claimed == 0
    world.run_worker()

    assert follow_up_cards(world) == []
    assert len(google.google.gmail.sent(REP_EMAIL)) == 1


def test_a_follow_up_drafted_before_the_contact_turned_follow_ups_off_is_not_sent(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    launch_and_send_step_one(world, google)
    clock._at = STEP_TWO_DUE
    world.runtime.outreach.cadences.tick()
    world.run_worker()
    [drafted] = follow_up_cards(world)
    message = world.card_messages()[-1]
    headers = api_token(world)
    assert (
        world.client.put(
            f"/api/contacts/{dana(world).id}/email-preferences",
            json={"follow_up": False},
            headers=headers,
        ).status_code
        == 200
    )

    card_id = approve(world, message)

    assert card_id == drafted.id
    withdrawn = wait_until(
        lambda: (row := card(world, card_id)).state == "withdrawn" and row, what="withdrawn"
    )
    assert withdrawn.withdrawn_reason == (
        "Not sent: the cadence stopped (unsubscribed from follow-ups) after this step was drafted."
    )
    assert len(google.google.gmail.sent(REP_EMAIL)) == 1


def test_one_click_on_a_follow_up_leaves_follow_ups_only(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    launch_and_send_step_one(world, google)
    clock._at = STEP_TWO_DUE
    world.runtime.outreach.cadences.tick()
    world.run_worker()
    approve(world, world.card_messages()[-1])
    wait_until(lambda: len(google.google.gmail.sent(REP_EMAIL)) == 2, what="follow-up sent")
    follow_up = google.google.gmail.sent(REP_EMAIL)[-1]
    header = str(follow_up.message["List-Unsubscribe"])
    path = path_of(re.findall(r"<(http[^>]+)>", header)[0])

    answer = world.client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert answer.status_code == 200
    contact = dana(world)
    assert contact.opted_out_at is None
    assert contact.email_preferences == {
        "newsletter": True,
        "campaign": True,
        "follow_up": False,
        "announcement": True,
    }
    assert history(world) == [
        {"email_type": "follow_up", "subscribed": False, "source": "one_click"}
    ]
    # Her choice is shown on the page, and she can take it back there.
    again = world.client.post(path, data={"action": "resubscribe", "type": "follow_up"})
    assert "You will receive follow-up emails again" in again.text
    assert dana(world).email_preferences["follow_up"] is True


def test_the_rest_api_reads_and_changes_preferences_and_names_the_valid_types(
    world: SlackWorld,
) -> None:
    headers = api_token(world)
    route = f"/api/contacts/{dana(world).id}/email-preferences"

    first = world.client.get(route, headers=headers)
    changed = world.client.put(
        route, json={"newsletter": False, "campaign": False}, headers=headers
    )
    read_back = world.client.get(route, headers=headers)
    unknown = world.client.put(route, json={"promos": False}, headers=headers)
    not_bool = world.client.put(route, json={"newsletter": "no"}, headers=headers)
    transactional = world.client.put(route, json={"transactional": False}, headers=headers)
    missing = world.client.get("/api/contacts/999999/email-preferences", headers=headers)

    everything = {t.value: True for t in EmailType}
    assert first.status_code == 200
    assert first.json()["email_preferences"] == everything
    assert first.json()["receives"] == everything
    assert changed.status_code == 200
    assert read_back.json() == changed.json()
    assert read_back.json()["email_preferences"] == {
        **everything,
        "newsletter": False,
        "campaign": False,
    }
    # Campaign emails off: their follow-ups do not go either.
    assert read_back.json()["receives"] == {
        **everything,
        "newsletter": False,
        "campaign": False,
        "follow_up": False,
    }
    assert unknown.status_code == 422
    assert (
        "unknown email type 'promos': use one of newsletter, campaign, follow_up, announcement,"
        " transactional" in unknown.json()["error"]["message"]
    )
    assert not_bool.status_code == 422
    assert "newsletter must be true or false" in json.dumps(not_bool.json())
    assert transactional.status_code == 422
    assert "transactional emails cannot be turned off" in json.dumps(transactional.json())
    assert missing.status_code == 404
    assert [(h["email_type"], h["source"]) for h in history(world)] == [
        ("newsletter", "api"),
        ("campaign", "api"),
    ]
