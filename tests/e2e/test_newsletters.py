"""A newsletter end to end: REST, the preview card in the Slack stand-in, a signed click on
Approve & schedule, the sweep planning the sends, the outbox sending them from two reps'
mailboxes over simulated days into the Gmail stand-in, and the issue's numbers by REST.

Five contacts subscribe; one turns newsletters off after the issue was planned (her row is
refused when the outbox claims it, and she still gets a campaign email); one unsubscribes
from newsletters through the one-click link of the issue she received.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.email_preferences import EmailType
from domain.mail import OutgoingEmail, SendStatus
from handlers.slack.ids import ActionId
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.gmail_app import connect_gmail, google_settings
from tests.support.google import GoogleServer
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, REVIEW_CHANNEL, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

MARIA = "maria@lonestar.example.com"
JOSE = "jose@lonestar.example.com"
CAP, SPACING = 4, 60  # each mailbox: 4 a day, so a newsletter at 50 % sends 2 a day
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock, google: GoogleServer
) -> Iterator[SlackWorld]:
    with slack_world(
        committed_engine, served_slack, clock, contacts=5, extra_settings=google_settings(google)
    ) as built:
        yield built


def connect(world: SlackWorld, google: GoogleServer, email: str, name: str) -> tuple[int, str]:
    """A rep connects their mailbox; return their user id and an API token of theirs."""
    with world.session_factory() as session:
        user_id = ensure_user(session, world.org_id, email=email, name=name)
        _, token = create_token(session, world.org_id, name=name, user_id=user_id)
        session.commit()
    assert connect_gmail(world.client, google.google, email, token=token).status_code == 200
    with world.session_factory() as session:
        account = session.scalars(select(m.GmailAccount).where(m.GmailAccount.email == email)).one()
        account.daily_send_cap, account.min_send_interval_seconds = CAP, SPACING
        session.commit()
    return user_id, token


def contact_id(world: SlackWorld, email: str) -> int:
    with world.session_factory() as session:
        return session.scalars(select(m.Contact.id).where(m.Contact.email == email)).one()


def issue_row(world: SlackWorld, issue_id: int) -> m.NewsletterIssue:
    with world.session_factory() as session:
        row = session.get(m.NewsletterIssue, issue_id)
        assert row is not None
        return row


def newsletter_card(world: SlackWorld) -> Any:
    return next(
        msg
        for msg in world.slack.messages(REVIEW_CHANNEL)
        if any("📰" in str(b.get("text", {}).get("text", "")) for b in msg.blocks or [])
    )


def card_text(message: Any) -> str:
    return "\n".join(
        str((b.get("text") or {}).get("text", ""))
        + "".join(str(e.get("text", "")) for e in b.get("elements", []) or [])
        for b in message.blocks or []
    )


def submitted_issue(
    world: SlackWorld, auth: dict[str, str], senders: list[int], **fields: Any
) -> tuple[str, dict[str, Any]]:
    """The newsletter "Lender Update" sent from `senders`' mailboxes, with an issue (a plain
    one, `fields` changed) submitted for review and its card posted; return the URL of the
    newsletter's issues and the issue."""
    newsletter = world.client.post(
        "/api/marketing/newsletters",
        json={
            "name": "Lender Update",
            "sender_user_ids": senders,
            "slack_channel_id": REVIEW_CHANNEL,
        },
        headers=auth,
    ).json()
    base = f"/api/marketing/newsletters/{newsletter['id']}/issues"
    issue = world.client.post(
        base,
        json={
            "title": "December",
            "subject_template": "News",
            "text_template": "Hi {{ first_name }}",
            **fields,
        },
        headers=auth,
    ).json()
    assert world.client.post(f"{base}/{issue['id']}/submit", headers=auth).status_code == 200
    assert world.runtime.newsletter_sweep is not None
    world.runtime.newsletter_sweep.run_once()
    return base, issue


def max_in_any_day(times: list[datetime]) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, at in enumerate(times):
        while at - times[left] >= timedelta(hours=24):
            left += 1
        best = max(best, right - left + 1)
    return best


def test_an_issue_previewed_approved_in_slack_and_sent_over_days_reaches_each_subscriber_once(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    maria, token = connect(world, google, MARIA, "Maria Lopez")
    jose, _ = connect(world, google, JOSE, "Jose Ruiz")
    auth = {"Authorization": f"Bearer {token}"}
    runtime = world.runtime
    assert runtime.newsletter_sweep is not None
    assert runtime.gmail is not None

    created = world.client.post(
        "/api/marketing/newsletters",
        json={
            "name": "Lender Update",
            "sender_user_ids": [maria, jose],
            "slack_channel_id": REVIEW_CHANNEL,
        },
        headers=auth,
    )
    assert created.status_code == 201, created.text
    newsletter = created.json()
    assert newsletter["cap_share_percent"] == 50
    base = f"/api/marketing/newsletters/{newsletter['id']}/issues"
    broken = world.client.post(
        base,
        json={"title": "December", "subject_template": "Hi", "text_template": "a\n{{ nope }"},
        headers=auth,
    )
    assert broken.status_code == 422
    assert "text_template, line 2" in broken.json()["error"]["message"]
    issue = world.client.post(
        base,
        json={
            "title": "December",
            "subject_template": "{{ newsletter_name }}: {{ headline }}",
            "text_template": "Hi {{ first_name }},\n\n{{ headline }} at {{ company_name }}.\n",
            "html_template": "<p>Hi {{ first_name }}, {{ headline }}</p>",
            "variables": {"headline": "Turn times are down to 5 days"},
        },
        headers=auth,
    ).json()
    assert issue["status"] == "draft"

    submitted = world.client.post(f"{base}/{issue['id']}/submit", headers=auth)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "in_review"
    assert submitted.json()["audience_count"] == 5
    runtime.newsletter_sweep.run_once()

    message = newsletter_card(world)
    shown = card_text(message)
    assert "*Audience* 5 subscribers · sample: lo0@pinnacle.example.com" in shown
    assert "5 emails from 2 mailboxes, 4/day, finishes" in shown
    assert "Lender Update: Turn times are down to 5 days" in shown
    assert "Hi Dana0," in shown

    value = world.button(message, ActionId.NEWSLETTER_APPROVE)["value"]
    ack = world.click(ActionId.NEWSLETTER_APPROVE, value, message_ts=message.ts, user=REP)
    assert ack.status_code == 200
    wait_until(lambda: issue_row(world, issue["id"]).status == "scheduled", what="scheduled")
    runtime.newsletter_sweep.run_once()

    planned = issue_row(world, issue["id"])
    assert (planned.planned_count, planned.approved_by) == (5, maria)
    assert planned.planned_at is not None
    assert "📅 Scheduled: 5 emails from 2 mailboxes" in card_text(newsletter_card(world))
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.EmailSend).where(m.EmailSend.newsletter_issue_id == issue["id"])
        ).all()
    assert sorted(r.to_email for r in rows) == [f"lo{n}@pinnacle.example.com" for n in range(5)]
    assert {(r.email_type, r.campaign_email, r.status) for r in rows} == {
        ("newsletter", True, "queued")
    }

    # Lo1 turns newsletters off after the planning: the outbox refuses her row when it
    # claims it.
    lo1 = contact_id(world, "lo1@pinnacle.example.com")
    turned_off = world.client.put(
        f"/api/contacts/{lo1}/email-preferences", json={"newsletter": False}, headers=auth
    )
    assert turned_off.status_code == 200

    # The outbox worker, hour by hour over four days.
    for _ in range(4 * 24):
        runtime.gmail.outbox.run_once()
        clock.advance(hours=1)
    runtime.gmail.outbox.run_once()
    runtime.newsletter_sweep.run_once()

    sent = {box: [s.message for s in google.google.gmail.sent(box)] for box in (MARIA, JOSE)}
    recipients = sorted(str(msg["To"]) for msgs in sent.values() for msg in msgs)
    assert [re.sub(r".*<|>", "", r) for r in recipients] == [
        "lo0@pinnacle.example.com",
        "lo2@pinnacle.example.com",
        "lo3@pinnacle.example.com",
        "lo4@pinnacle.example.com",
    ]
    with world.session_factory() as session:
        rows = session.scalars(
            select(m.EmailSend).where(m.EmailSend.newsletter_issue_id == issue["id"])
        ).all()
    refused = [r for r in rows if r.status == "failed"]
    assert [r.to_email for r in refused] == ["lo1@pinnacle.example.com"]
    assert "newsletters" in (refused[0].error or "")
    for account_id in {r.gmail_account_id for r in rows}:
        times = [r.sent_at for r in rows if r.gmail_account_id == account_id and r.sent_at]
        assert max_in_any_day(times) <= CAP // 2
    first = sent[MARIA][0]
    assert first["Subject"] == "Lender Update: Turn times are down to 5 days"
    assert "List-Unsubscribe" in first

    # She still gets a campaign email.
    outcome = runtime.gmail.mailer.send(
        OutgoingEmail(
            org_id=world.org_id,
            to_email="lo1@pinnacle.example.com",
            subject="A campaign email",
            body_text="Hi Dana1",
            sender_user_id=maria,
            contact_id=lo1,
            email_type=EmailType.CAMPAIGN,
        )
    )
    assert outcome.status in (SendStatus.SENT, SendStatus.QUEUED), outcome.detail
    clock.advance(minutes=5)
    runtime.gmail.outbox.run_once()
    assert any(
        "lo1@pinnacle.example.com" in str(s.message["To"]) for s in google.google.gmail.sent(MARIA)
    )

    # Lo0 unsubscribes from newsletters through the issue's one-click link.
    to_lo0 = next(
        msg
        for msgs in sent.values()
        for msg in msgs
        if "lo0@pinnacle.example.com" in str(msg["To"])
    )
    link = re.findall(r"<(http[^>]+)>", str(to_lo0["List-Unsubscribe"]))[0]
    clicked = world.client.post(
        urlsplit(link).path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert clicked.status_code == 200

    answer = world.client.get(f"{base}/{issue['id']}", headers=auth)
    assert answer.status_code == 200
    got = answer.json()
    assert got["status"] == "sent"
    assert got["metrics"] == {
        "planned": 5,
        "queued": 0,
        "sent": 4,
        "failed": 1,
        "withdrawn": 0,
        "bounced": 0,
        "unsubscribed": 1,
        "unsubscribed_newsletter": 1,
        "unsubscribed_everything": 0,
        "opened": None,
        "clicked": None,
        "tracking_note": (
            "opens and clicks are not tracked: the organization's tracking is off"
            " (PUT /api/marketing/analytics-settings)"
        ),
    }
    assert "📬 Sent to 4 subscribers; 1 not sent" in card_text(newsletter_card(world))


def test_a_stale_approval_is_refused_and_only_the_newsletter_creator_or_an_admin_approves(
    world: SlackWorld, google: GoogleServer
) -> None:
    maria, token = connect(world, google, MARIA, "Maria Lopez")
    auth = {"Authorization": f"Bearer {token}"}
    base, issue = submitted_issue(world, auth, [maria])
    old = world.button(newsletter_card(world), ActionId.NEWSLETTER_APPROVE)["value"]

    edited = world.client.patch(
        f"{base}/{issue['id']}", json={"text_template": "Hello {{ first_name }}"}, headers=auth
    )
    assert edited.status_code == 200
    assert "Hello Dana0" in card_text(newsletter_card(world))
    world.click(ActionId.NEWSLETTER_APPROVE, old, message_ts=newsletter_card(world).ts)
    wait_until(
        lambda: any("changed since this card was shown" in t for t in ephemerals(world)),
        what="stale refusal",
    )
    assert issue_row(world, issue["id"]).status == "in_review"

    # Jose (a rep who did not make the newsletter) may not approve it.
    new = world.button(newsletter_card(world), ActionId.NEWSLETTER_APPROVE)["value"]
    world.click(ActionId.NEWSLETTER_APPROVE, new, user="U0JOSE001")
    wait_until(
        lambda: any("Only an admin or the creator" in t for t in ephemerals(world)),
        what="refusal",
    )
    assert issue_row(world, issue["id"]).status == "in_review"


def ephemerals(world: SlackWorld) -> list[str]:
    return [str(c.params.get("text", "")) for c in world.slack.calls("chat.postEphemeral")]


def test_a_mailbox_disconnected_after_the_planning_holds_its_emails_and_the_card_says_why(
    world: SlackWorld, google: GoogleServer, clock: FixedClock
) -> None:
    maria, token = connect(world, google, MARIA, "Maria Lopez")
    auth = {"Authorization": f"Bearer {token}"}
    runtime = world.runtime
    assert runtime.newsletter_sweep is not None
    assert runtime.gmail is not None
    _, issue = submitted_issue(world, auth, [maria], text_template="Hi")
    value = world.button(newsletter_card(world), ActionId.NEWSLETTER_APPROVE)["value"]
    world.click(ActionId.NEWSLETTER_APPROVE, value, message_ts=newsletter_card(world).ts)
    wait_until(lambda: issue_row(world, issue["id"]).status == "scheduled", what="scheduled")
    runtime.newsletter_sweep.run_once()
    assert issue_row(world, issue["id"]).planned_count == 5

    with world.session_factory() as session:
        account = session.scalars(select(m.GmailAccount).where(m.GmailAccount.email == MARIA)).one()
        account.status = "disconnected"
        session.commit()
    for _ in range(4 * 24):
        runtime.gmail.outbox.run_once()
        clock.advance(hours=1)
    runtime.newsletter_sweep.run_once()

    assert google.google.gmail.sent(MARIA) == []
    # Nothing is lost: the emails wait for the mailbox, and the card says so.
    assert issue_row(world, issue["id"]).status in {"scheduled", "sending"}
    shown = card_text(newsletter_card(world))
    assert f"⏸️ 5 emails: On hold: Gmail is not connected for {MARIA} any more" in shown
    runtime.newsletter_sweep.run_once()
    assert card_text(newsletter_card(world)) == shown  # said once, not on every round

    with world.session_factory() as session:
        account = session.scalars(select(m.GmailAccount).where(m.GmailAccount.email == MARIA)).one()
        account.status = "connected"
        session.commit()
    for _ in range(2 * 24):
        runtime.gmail.outbox.run_once()
        clock.advance(hours=1)
    runtime.newsletter_sweep.run_once()

    assert len(google.google.gmail.sent(MARIA)) == 5
    assert issue_row(world, issue["id"]).status == "sent"
    assert "📬 Sent to 5 subscribers" in card_text(newsletter_card(world))
