"""The stale-client routes and `stale_top` launches over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.contacts import UserRole
from storage import models as m
from tests.support.accounts import create_token, ensure_user
from tests.support.api import ApiWorld, make_api_world
from tests.support.builders import make_client, make_contact, make_order
from tests.support.engagement_data import make_campaign

SessionFactory = Callable[[], Session]
ROUTE = "/api/marketing/stale-clients"


@dataclass
class Data:
    api: ApiWorld
    admin_token: str
    rep_token: str
    campaign_id: int
    clients: list[int]  # best ranked first
    contacts: dict[str, int]


@pytest.fixture
def data(engine: Engine, session_factory: SessionFactory, clock: FixedClock) -> Data:
    api = make_api_world(engine, session_factory, clock, start_background=False)
    now = clock.now()
    with session_factory() as session:
        org = session.get(m.Organization, api.org_id)
        assert org is not None
        admin = ensure_user(session, org.id, email="ann@lonestar.test", role=UserRole.ADMIN)
        rep = ensure_user(session, org.id, email="rob@lonestar.test", role=UserRole.REP)
        _, admin_token = create_token(session, org.id, name="admin", user_id=admin)
        _, rep_token = create_token(session, org.id, name="rep", user_id=rep)
        busy = make_client(session, org, name="Busy Lending")
        quiet = make_client(session, org, name="Quiet Mortgage")
        fresh = make_client(session, org, name="Fresh Bank")
        for days in range(120, 420, 10):  # 30 orders
            make_order(session, org, busy, ordered_at=now - timedelta(days=days))
        for days in (150, 300):
            make_order(session, org, quiet, ordered_at=now - timedelta(days=days))
        make_order(session, org, fresh, ordered_at=now - timedelta(days=3))
        contacts = {
            "dana": make_contact(session, org, busy, email="dana@busy.test", role_code="LO").id,
            "ray": make_contact(session, org, busy, email="ray@busy.test", role_code="UW").id,
            "kim": make_contact(session, org, quiet, email="kim@quiet.test", role_code="VM").id,
            "new": make_contact(session, org, fresh, email="new@fresh.test", role_code="LO").id,
        }
        template = m.EmailTemplate(
            org_id=org.id,
            name="Win-back",
            category="campaign",
            subject="Hello {{ first_name }}",
            body="It has been a while.",
            variables=[],
        )
        session.add(template)
        session.flush()
        campaign = make_campaign(
            session, org.id, name="Win-back", email_template_ids=[template.id], cadence_days=[0]
        )
        session.commit()
        return Data(
            api=api,
            admin_token=admin_token,
            rep_token=rep_token,
            campaign_id=campaign.id,
            clients=[busy.id, quiet.id],
            contacts=contacts,
        )


def get(data: Data, path: str = ROUTE, token: str | None = None) -> Any:
    return data.api.client.get(path, headers=data.api.auth(token))


def post(data: Data, path: str, token: str | None = None, body: object = None) -> Any:
    return data.api.client.post(path, headers=data.api.auth(token), json=body)


def test_a_ranking_never_computed_says_so_and_how(data: Data) -> None:
    answer = get(data)
    assert answer.status_code == 200
    body = answer.json()
    assert body["computed_at"] is None
    assert body["clients"] == []
    assert "POST /api/marketing/stale-clients/recompute" in body["note"]


def test_an_admin_recomputes_the_ranking_and_everyone_reads_it(
    data: Data, clock: FixedClock
) -> None:
    refused = post(data, f"{ROUTE}/recompute", token=data.rep_token)
    assert refused.status_code == 403
    assert "Only an admin" in refused.json()["error"]["message"]
    assert post(data, f"{ROUTE}/recompute", token=data.api.read_token).status_code == 403
    answer = post(data, f"{ROUTE}/recompute", token=data.admin_token)
    assert answer.status_code == 200
    body = answer.json()
    assert body["computed_at"] == clock.now().isoformat().replace("+00:00", "Z")
    assert (body["clients_considered"], body["clients_ranked"], body["contacts_scored"]) == (
        2,
        2,
        4,
    )
    assert [(c["rank"], c["client_name"]) for c in body["clients"]] == [
        (1, "Busy Lending"),
        (2, "Quiet Mortgage"),
    ]
    first = body["clients"][0]
    assert first["days_since_order"] == 120
    assert first["best_contact"]["email"] == "dana@busy.test"
    assert first["reasons"]["past_order_rate"]["orders"] == 30
    # 30 orders over 380 days (the first, 410 days ago, to the last + 90); Dana: LO 30,
    # her client the busiest 25, its last order 120 days ago 6.3.
    assert first["reasons"]["summary"] == (
        "2.4 orders a month over 12 months; no order for 120 days; best contact's lead score 61"
    )
    read = get(data, f"{ROUTE}?limit=1", token=data.api.read_token).json()
    assert [c["client_name"] for c in read["clients"]] == ["Busy Lending"]
    # A token acting for the whole organization may recompute too.
    assert post(data, f"{ROUTE}/recompute").status_code == 200


def test_another_organization_sees_only_its_own_ranking(data: Data) -> None:
    post(data, f"{ROUTE}/recompute", token=data.admin_token)
    theirs = get(data, token=data.api.other_token).json()
    assert (theirs["computed_at"], theirs["clients"]) == (None, [])


def test_a_limit_out_of_bounds_is_refused(data: Data) -> None:
    assert get(data, f"{ROUTE}?limit=0").status_code == 422
    assert get(data, f"{ROUTE}?limit=1001").status_code == 422


def test_a_rest_launch_with_stale_top_waits_for_the_ranking_then_targets_it(
    data: Data, session_factory: SessionFactory, clock: FixedClock
) -> None:
    launch = f"/api/campaigns/{data.campaign_id}/launch"
    early = post(data, launch, body={"stale_top": 1})
    assert early.status_code == 409
    assert "stale-client ranking has not been computed" in early.json()["error"]["message"]
    assert "POST /api/marketing/stale-clients/recompute" in early.json()["error"]["message"]
    for bad in (0, 1001, "ten"):
        assert post(data, launch, body={"stale_top": bad}).status_code == 422
    post(data, f"{ROUTE}/recompute", token=data.admin_token)
    answer = post(data, launch, body={"stale_top": 1})
    assert answer.status_code == 201
    body = answer.json()
    # Busy Lending's two contacts, Dana (its best) first.
    assert body["audience_count"] == 2
    assert body["ranking_at"] == clock.now().isoformat().replace("+00:00", "Z")
    assert body["job"]["params"]["target"]["stale_top"] == 1
    with session_factory() as session:
        job = session.scalars(select(m.Job).where(m.Job.id == body["job"]["id"])).one()
        assert job.params["target"]["stale_top"] == 1


def test_a_job_created_through_the_jobs_api_may_target_the_ranking(data: Data) -> None:
    body = {
        "name": "Call the quiet ones",
        "params": {
            "target": {"stale_top": 2},
            "templates": [{"subject": "Hi {{ first_name }}", "body": "Hello."}],
        },
    }
    assert post(data, "/api/agent/jobs", body=body).status_code == 409
    post(data, f"{ROUTE}/recompute", token=data.admin_token)
    created = post(data, "/api/agent/jobs", body=body)
    assert created.status_code == 201
    assert created.json()["params"]["target"]["stale_top"] == 2


def test_the_daily_run_is_scheduled_with_the_processs_periodic_jobs(data: Data) -> None:
    runtime = data.api.client.app.state.runtime  # type: ignore[attr-defined]
    assert "targeting-daily" in runtime.scheduler.names
    # Its run: the organizations never ranked are due (two here), then none.
    assert runtime.scheduler.run("targeting-daily") == 2
    assert runtime.scheduler.run("targeting-daily") == 0
    assert get(data).json()["clients_ranked"] == 2
