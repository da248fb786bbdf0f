"""Newsletters through the REST API beside the digest: the digest's newsletter figures are
what `GET …/issues/{issue_id}` answers at the same moment, and `POST …/cancel` cancels the
sending (idempotent; refused for a draft)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.analytics import AnalyticsWindow, DigestFacts
from domain.clock import FixedClock
from domain.deps import Deps
from domain.digest_message import render_digest
from domain.newsletter_service import Newsletters
from domain.outreach import Actor
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import ensure_user
from tests.support.api import ApiWorld, make_api_world
from tests.support.builders import make_contact

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
N = "/api/marketing/newsletters"


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    clock._at = NOW
    return make_api_world(engine, session_factory, clock, start_background=False)


def scheduled(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock, *, contacts: int
) -> tuple[str, Newsletters, list[m.EmailSend]]:
    """An issue approved by its newsletter's creator and planned: (its URL, the use cases,
    its outbox rows)."""
    with session_factory() as session:
        org = session.get(m.Organization, api.org_id)
        assert org is not None
        maria = ensure_user(session, api.org_id, email="maria@lonestar.example", name="Maria")
        session.add(
            m.GmailAccount(
                org_id=api.org_id,
                user_id=maria,
                email="maria@lonestar.example",
                status="connected",
                daily_send_cap=400,
                min_send_interval_seconds=5,
            )
        )
        for n in range(contacts):
            make_contact(session, org, email=f"lo{n}@pinnacle.example", first_name=f"Dana{n}")
        session.commit()
    newsletter = api.client.post(
        N,
        json={"name": "Lender <Update>", "sender_user_ids": [maria], "slack_channel_id": "C0NL"},
        headers=api.auth(),
    ).json()
    base = f"{N}/{newsletter['id']}/issues"
    issue = api.client.post(
        base,
        json={"title": "December", "subject_template": "News", "text_template": "Hi"},
        headers=api.auth(),
    ).json()
    submitted = api.client.post(f"{base}/{issue['id']}/submit", headers=api.auth())
    assert submitted.status_code == 200, submitted.text
    counter = iter(range(1, 10**6))
    nl = Newsletters(
        Deps(uow=lambda: UnitOfWork(session_factory), clock=clock),
        new_message_id=lambda: f"<nl-{next(counter)}@lonestar.example>",
    )
    with UnitOfWork(session_factory) as uow:
        shown = uow.newsletter_issues.get(api.org_id, issue["id"]).card_fingerprint
    nl.approve(
        Actor(org_id=api.org_id, user_id=maria, role="admin"),
        issue["id"],
        fingerprint=shown,
    )
    assert nl.plan_next() is True
    with session_factory() as session:
        rows = list(
            session.scalars(
                select(m.EmailSend)
                .where(m.EmailSend.newsletter_issue_id == issue["id"])
                .order_by(m.EmailSend.id)
            )
        )
    return f"{base}/{issue['id']}", nl, rows


def digest(api: ApiWorld, session_factory: Callable[[], Session], now: datetime) -> DigestFacts:
    window = AnalyticsWindow(since=now - timedelta(days=1), until=now)
    with UnitOfWork(session_factory) as uow:
        return uow.analytics.digest_facts(api.org_id, window, time_zone="UTC", now=now)


def test_the_digests_newsletter_figures_are_what_the_issue_route_answers(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    assert digest(api, session_factory, NOW).newsletters == []  # nothing: no section
    url, nl, rows = scheduled(api, session_factory, clock, contacts=6)
    clock.advance(hours=3)
    now = clock.now()
    # Three emails went out in the period; one bounced, one unsubscribed from everything.
    with session_factory() as session:
        for n, row in enumerate(rows[:3]):
            sent = session.get(m.EmailSend, row.id)
            assert sent is not None
            sent.status, sent.sent_at, sent.not_before = "sent", NOW + timedelta(minutes=n), None
        session.add_all(
            [
                m.ContactEngagementEvent(
                    org_id=api.org_id,
                    contact_id=rows[0].contact_id,
                    event="bounced",
                    occurred_at=NOW + timedelta(minutes=30),
                    email_send_id=rows[0].id,
                ),
                m.ContactEngagementEvent(
                    org_id=api.org_id,
                    contact_id=rows[1].contact_id,
                    event="opted_out",
                    occurred_at=NOW + timedelta(hours=1),
                ),
            ]
        )
        session.commit()
    nl.follow_sends()

    facts = digest(api, session_factory, now)
    got = api.client.get(url, headers=api.auth()).json()

    (line,) = facts.newsletters
    metrics = got["metrics"]
    assert (line.issue_id, line.status, line.title) == (got["id"], got["status"], got["title"])
    assert (line.sent, line.planned, line.bounced, line.unsubscribed) == (
        metrics["sent"],
        metrics["planned"],
        metrics["bounced"],
        metrics["unsubscribed"],
    )
    assert (line.sent, line.planned, line.bounced, line.unsubscribed) == (3, 6, 1, 1)
    assert line.finish is not None
    assert line.finish.isoformat().replace("+00:00", "Z") == got["planned_finish"].replace(
        "+00:00", "Z"
    )
    message = render_digest(facts, frequency="daily", time_zone="UTC", title="D", permalinks={})
    shown = json.dumps(message.blocks, ensure_ascii=False)
    finish = line.finish
    assert "*📰 Newsletters* · 1 issue" in shown
    assert (
        f"• Lender &lt;Update&gt; · December · _sending_ · 3 / 6 sent · 1 bounced ·"
        f" 1 unsubscribed · finishes {finish:%b} {finish.day} ≈{finish:%H:%M} UTC"
    ) in shown

    # Cancelled: the rest is withdrawn, and the digest says so with the same figures.
    cancelled = api.client.post(f"{url}/cancel", headers=api.auth())
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["sent_before_cancel"], body["withdrawn_count"]) == (
        "cancelled",
        3,
        3,
    )
    assert body["cancelled_at"] is not None
    again = api.client.post(f"{url}/cancel", headers=api.auth())
    assert again.status_code == 200
    assert again.json()["updated_at"] == body["updated_at"]
    got = api.client.get(url, headers=api.auth()).json()
    assert (got["metrics"]["withdrawn"], got["metrics"]["failed"]) == (3, 0)
    (line,) = digest(api, session_factory, now).newsletters
    assert (line.status, line.sent, line.planned) == ("cancelled", 3, 6)


def test_cancelling_a_draft_or_another_organizations_issue_is_refused(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    url, _, _ = scheduled(api, session_factory, clock, contacts=1)
    newsletter_url = url.rsplit("/issues/", 1)[0]
    draft = api.client.post(
        f"{newsletter_url}/issues",
        json={"title": "January", "subject_template": "News", "text_template": "Hi"},
        headers=api.auth(),
    ).json()

    refused = api.client.post(f"{newsletter_url}/issues/{draft['id']}/cancel", headers=api.auth())
    assert refused.status_code == 409
    assert "it is a draft, nothing is being sent; delete it instead" in refused.text
    other = api.client.post(f"{url}/cancel", headers=api.auth(api.other_token))
    assert other.status_code == 404
    reader = api.client.post(f"{url}/cancel", headers=api.auth(api.read_token))
    assert reader.status_code == 403
    assert api.client.get(url, headers=api.auth()).json()["status"] == "scheduled"
