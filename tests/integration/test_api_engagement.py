"""The engagement routes over HTTP, on SQLite and PostgreSQL: a contact's timeline and a
campaign's engagement by cadence step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.engagement import EngagementEvent, record_engagement
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.api import ApiWorld, make_api_world
from tests.support.builders import make_client, make_contact
from tests.support.engagement_data import make_campaign, make_inbound, make_job, make_send

E = EngagementEvent
SessionFactory = Callable[[], Session]


@pytest.fixture
def api(engine: Engine, session_factory: SessionFactory, clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


class Data:
    """A campaign of two steps sent to three contacts of one client, and what came back."""

    def __init__(self, session: Session, session_factory: SessionFactory, api: ApiWorld, now: Any):
        org = session.get(m.Organization, api.org_id)
        assert org is not None
        self.now = now
        client = make_client(session, org, name="Pinnacle Lending")
        self.dana = make_contact(session, org, client, email="dana@pinnacle.test")
        self.ray = make_contact(session, org, client, email="ray@pinnacle.test")
        self.kim = make_contact(session, org, client, email="kim@pinnacle.test")
        self.campaign = make_campaign(session, org.id, name="Q4 lender win-back")
        other = make_campaign(session, org.id, name="Spring promo")
        job = make_job(session, org.id, campaign_id=self.campaign.id)
        t0 = now - timedelta(days=20)
        self.t0 = t0

        def send(contact: m.Contact, step: int, days: int, campaign: m.MarketingCampaign) -> Any:
            return make_send(
                session,
                org.id,
                contact,
                sent_at=t0 + timedelta(days=days),
                campaign_id=campaign.id,
                job_id=job.id,
                step=step,
                subject=f"Step {step} for {contact.first_name}",
            )

        self.dana_0 = send(self.dana, 0, 0, self.campaign)
        self.ray_0 = send(self.ray, 0, 0, self.campaign)
        self.kim_0 = send(self.kim, 0, 0, self.campaign)
        self.dana_1 = send(self.dana, 1, 4, self.campaign)
        self.ray_1 = send(self.ray, 1, 4, self.campaign)
        # Not counted: another campaign's send, and a send that never left.
        self.other = send(self.kim, 0, 6, other)
        make_send(
            session, org.id, self.kim, sent_at=None, campaign_id=self.campaign.id, status="failed"
        )
        self.dana_reply = make_inbound(
            session,
            org.id,
            contact_id=self.dana.id,
            email_send_id=self.dana_1.id,
            subject="Re: Step 1",
            category="SCHEDULING",
            intent="meeting_request",
        )
        self.ray_reply = make_inbound(
            session,
            org.id,
            contact_id=self.ray.id,
            email_send_id=self.ray_0.id,
            intent="not_interested",
            sentiment="negative",
        )
        self.kim_reply = make_inbound(
            session, org.id, contact_id=self.kim.id, email_send_id=self.kim_0.id, intent="none"
        )
        session.commit()
        uow = UnitOfWork(session_factory)
        with uow:

            def rec(contact: m.Contact, event: EngagementEvent, days: float, **kw: Any) -> None:
                record_engagement(
                    uow.engagement,
                    org_id=org.id,
                    contact_id=contact.id,
                    event=event,
                    occurred_at=t0 + timedelta(days=days),
                    **kw,
                )

            for row, contact in (
                (self.dana_0, self.dana),
                (self.ray_0, self.ray),
                (self.kim_0, self.kim),
                (self.dana_1, self.dana),
                (self.ray_1, self.ray),
                (self.other, self.kim),
            ):
                rec(
                    contact,
                    E.SENT,
                    (row.sent_at - t0).total_seconds() / 86400,
                    email_send_id=row.id,
                )
            # The pipeline passes the inbound email only: its send is found through it.
            rec(self.dana, E.MEETING_REQUEST, 5, inbound_email_id=self.dana_reply.id)
            rec(self.ray, E.NEGATIVE_REPLY, 1, inbound_email_id=self.ray_reply.id)
            rec(self.kim, E.REPLIED, 2, inbound_email_id=self.kim_reply.id)
            rec(self.ray, E.SOFT_BOUNCE, 5, email_send_id=self.ray_1.id)
            # The unsubscribe link names no send: it counts for Ray's last send before it.
            rec(self.ray, E.OPTED_OUT, 6, detail={"source": "one_click"})
            # Kim's opt-out follows the other campaign's send: not this campaign's.
            rec(self.kim, E.OPTED_OUT, 7, detail={"source": "one_click"})
            uow.commit()


@pytest.fixture
def data(
    session: Session, session_factory: SessionFactory, api: ApiWorld, clock: FixedClock
) -> Data:
    return Data(session, session_factory, api, clock.now())


def get(api: ApiWorld, path: str, **params: Any) -> Any:
    answer = api.client.get(path, params=params, headers=api.auth())
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- a contact's timeline ---------------------------------------------------------------


def test_a_contacts_timeline_shows_sends_replies_sentiment_and_score_oldest_first(
    api: ApiWorld, data: Data
) -> None:
    body = get(api, f"/api/contacts/{data.dana.id}/engagement-history")

    entries = body["entries"]
    assert [(e["event"], e["score_delta"], e["score_after"]) for e in entries] == [
        ("sent", 0.0, 0.0),
        ("sent", 0.0, 0.0),
        ("meeting_request", 35.0, 35.0),
    ]
    assert entries[1]["send"] == {
        "id": data.dana_1.id,
        "subject": f"Step 1 for {data.dana.first_name}",
        "campaign_id": data.campaign.id,
        "campaign_name": "Q4 lender win-back",
        "step": 1,
    }
    assert entries[1]["inbound_email"] is None
    assert entries[2]["sentiment"] == "positive"
    assert entries[2]["inbound_email"] == {
        "id": data.dana_reply.id,
        "subject": "Re: Step 1",
        "category": "SCHEDULING",
        "intent": "meeting_request",
    }
    # 15 days since the meeting request: the score has lost a half-life's half.
    assert body["score"] == pytest.approx(35 / 2**0.5, abs=0.01)
    assert body["trend"] == "rising"
    assert body["last_replied_at"] == (data.t0 + timedelta(days=5)).isoformat().replace(
        "+00:00", "Z"
    )
    assert body["last_positive_interaction_at"] == body["last_replied_at"]
    assert body["next_cursor"] is None


def test_a_long_timeline_comes_in_pages_that_follow_each_other(api: ApiWorld, data: Data) -> None:
    path = f"/api/contacts/{data.ray.id}/engagement-history"
    first = get(api, path, limit=2)
    second = get(api, path, limit=2, cursor=first["next_cursor"])
    third = get(api, path, limit=2, cursor=second["next_cursor"])

    events = [e["event"] for page in (first, second, third) for e in page["entries"]]
    assert events == ["sent", "negative_reply", "sent", "soft_bounce", "opted_out"]
    assert third["next_cursor"] is None
    assert first["score"] == third["score"] == 0.0


def test_a_cursor_the_api_did_not_give_is_refused_with_422(api: ApiWorld, data: Data) -> None:
    answer = api.client.get(
        f"/api/contacts/{data.dana.id}/engagement-history",
        params={"cursor": "bm90LWEtY3Vyc29y"},
        headers=api.auth(),
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["details"] == [
        {"field": "cursor", "message": "this cursor is not one the API gave"}
    ]


def test_another_organizations_contact_is_not_found(api: ApiWorld, data: Data) -> None:
    answer = api.client.get(
        f"/api/contacts/{data.dana.id}/engagement-history", headers=api.auth(api.other_token)
    )

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_the_timeline_needs_a_token(api: ApiWorld, data: Data) -> None:
    answer = api.client.get(f"/api/contacts/{data.dana.id}/engagement-history")

    assert answer.status_code == 401


def test_a_contact_without_history_has_no_score_and_an_unknown_trend(
    api: ApiWorld, session: Session
) -> None:
    org = session.get(m.Organization, api.org_id)
    assert org is not None
    contact = make_contact(session, org)
    session.commit()

    body = get(api, f"/api/contacts/{contact.id}/engagement-history")

    assert (body["entries"], body["score"], body["trend"]) == ([], 0.0, "unknown")


# --- a campaign's engagement ------------------------------------------------------------


def counts(**values: Any) -> dict[str, Any]:
    base = {
        "sends": 0,
        "replies": 0,
        "replied_sends": 0,
        "positive_replies": 0,
        "neutral_replies": 0,
        "negative_replies": 0,
        "meeting_requests": 0,
        "opt_outs": 0,
        "complaints": 0,
        "bounces": 0,
        "soft_bounces": 0,
        "out_of_office": 0,
        "reply_rate": 0.0,
    }
    return {**base, **values}


def test_a_campaigns_engagement_counts_what_its_sends_brought_back_by_step(
    api: ApiWorld, data: Data
) -> None:
    body = get(api, f"/api/campaigns/{data.campaign.id}/engagement")

    assert (body["campaign_id"], body["campaign_name"]) == (data.campaign.id, "Q4 lender win-back")
    assert body["totals"] == counts(
        sends=5,
        replies=3,
        replied_sends=3,
        positive_replies=1,
        neutral_replies=1,
        negative_replies=1,
        meeting_requests=1,
        opt_outs=1,
        soft_bounces=1,
        reply_rate=0.6,
    )
    assert body["steps"] == [
        {
            "step": 0,
            **counts(
                sends=3,
                replies=2,
                replied_sends=2,
                neutral_replies=1,
                negative_replies=1,
                reply_rate=0.6667,
            ),
        },
        {
            "step": 1,
            **counts(
                sends=2,
                replies=1,
                replied_sends=1,
                positive_replies=1,
                meeting_requests=1,
                opt_outs=1,
                soft_bounces=1,
                reply_rate=0.5,
            ),
        },
    ]


def test_a_campaign_without_sends_has_zero_counts(api: ApiWorld, session: Session) -> None:
    campaign = make_campaign(session, api.org_id, name="Not launched")
    session.commit()

    body = get(api, f"/api/campaigns/{campaign.id}/engagement")

    assert body["totals"] == counts()
    assert body["steps"] == []


def test_another_organizations_campaign_is_not_found(api: ApiWorld, data: Data) -> None:
    answer = api.client.get(
        f"/api/campaigns/{data.campaign.id}/engagement", headers=api.auth(api.other_token)
    )

    assert answer.status_code == 404
