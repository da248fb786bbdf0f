"""`email_campaigns` on SQLite and PostgreSQL: the table equals the analytics route's figures
by step over the campaign's whole life (the route without since/until), through its two REST
routes and through the sweep that writes it (the world of tests/support/analytics_data.py:
steps 0 and 1 and sends outside a cadence, bounces, opt-outs from the link, replies)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from domain.email_campaigns import MAX_SUBJECTS, REFRESH_EVERY
from jobs.email_campaigns import EmailCampaignsRefresh
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.analytics_data import AnalyticsWorld
from tests.support.api import ApiWorld, make_api_world

SessionFactory = Callable[[], Session]
FIELDS = ("sent", "delivered", "unsubscribed", "replied")


@pytest.fixture
def api(engine: Engine, session_factory: SessionFactory, clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


@pytest.fixture
def world(
    api: ApiWorld, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> AnalyticsWorld:
    return AnalyticsWorld(
        session, session_factory, org_id=api.org_id, other_org_id=api.other_org_id, now=clock.now()
    )


def get(api: ApiWorld, path: str, **params: Any) -> Any:
    answer = api.client.get(path, params=params, headers=api.auth())
    assert answer.status_code == 200, answer.text
    return answer.json()


def analytics_steps(api: ApiWorld, campaign_id: int) -> dict[Any, dict[str, int]]:
    """The analytics route's figures by step over the campaign's whole life (no window)."""
    steps = get(api, f"/api/marketing/campaigns/{campaign_id}/analytics")["steps"]
    return {
        s["step"]: {**{f: s[f] for f in FIELDS}, "bounced": s["bounced_hard"]}
        for s in steps
        if s["sent"] or s["bounced_hard"] or s["unsubscribed"] or s["replied"]
    }


def table_steps(rows: list[dict[str, Any]]) -> dict[Any, dict[str, int]]:
    return {r["step"]: {f: r[f] for f in (*FIELDS, "bounced")} for r in rows}


def stored(session_factory: SessionFactory, org_id: int, campaign_id: int) -> list[dict[str, Any]]:
    uow = UnitOfWork(session_factory)
    with uow:
        return [
            row.model_dump(mode="json") for row in uow.email_campaigns.rows(org_id, [campaign_id])
        ]


def test_a_campaigns_rows_equal_its_analytics_by_step_over_its_whole_life(
    api: ApiWorld, world: AnalyticsWorld, session_factory: SessionFactory
) -> None:
    campaign = world.org.campaign_a.id
    rows = get(api, f"/api/marketing/campaigns/{campaign}/email-campaigns")

    assert table_steps(rows) == analytics_steps(api, campaign)
    # By hand (analytics_data.py): step 0 sent s1-s4 and s10 (s10 bounced hard, s1-s4
    # replied); step 1 sent s5 and s6 (s5 answered by a meeting request, Ray's opt-out
    # from the link counts for s6); s7 went out without a card.
    assert table_steps(rows) == {
        0: {"sent": 5, "delivered": 4, "unsubscribed": 0, "replied": 4, "bounced": 1},
        1: {"sent": 2, "delivered": 2, "unsubscribed": 1, "replied": 1, "bounced": 0},
        None: {"sent": 1, "delivered": 1, "unsubscribed": 0, "replied": 0, "bounced": 0},
    }
    first = rows[0]
    assert (first["org_id"], first["campaign_id"]) == (api.org_id, campaign)
    assert first["first_sent_at"] == world.t0.isoformat().replace("+00:00", "Z")
    assert first["last_sent_at"] == (world.t0 + timedelta(hours=1)).isoformat().replace(
        "+00:00", "Z"
    )
    assert 1 <= len(first["subjects"]) <= MAX_SUBJECTS
    # What the route answered is what the table holds.
    assert stored(session_factory, api.org_id, campaign) == rows


def test_the_list_route_answers_a_page_of_campaigns_or_one(
    api: ApiWorld, world: AnalyticsWorld
) -> None:
    every = get(api, "/api/marketing/email-campaigns")
    a, b = world.org.campaign_a.id, world.org.campaign_b.id
    assert {r["campaign_id"] for r in every} == {a, b}
    assert all(r["org_id"] == api.org_id for r in every)
    assert table_steps([r for r in every if r["campaign_id"] == b]) == analytics_steps(api, b)
    one = get(api, "/api/marketing/email-campaigns", campaign_id=b)
    assert one == [r for r in every if r["campaign_id"] == b]
    assert get(api, "/api/marketing/email-campaigns", limit=1, offset=100) == []


def test_another_organizations_campaign_is_not_found(
    api: ApiWorld, world: AnalyticsWorld, session_factory: SessionFactory
) -> None:
    rival = world.other.campaign_a.id
    for path, params in (
        (f"/api/marketing/campaigns/{rival}/email-campaigns", {}),
        ("/api/marketing/email-campaigns", {"campaign_id": rival}),
    ):
        answer = api.client.get(path, params=params, headers=api.auth())
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    # And the rival's rows were not written by this organization's requests.
    assert stored(session_factory, api.other_org_id, rival) == []


def test_the_sweep_backfills_every_organizations_campaigns_then_refreshes_only_what_is_due(
    api: ApiWorld,
    world: AnalyticsWorld,
    clock: FixedClock,
    session: Session,
    session_factory: SessionFactory,
) -> None:
    runtime = api.client.app.state.runtime  # type: ignore[attr-defined]
    assert EmailCampaignsRefresh.NAME in runtime.scheduler.names

    runtime.scheduler.run(EmailCampaignsRefresh.NAME)

    for org_id, campaign in ((api.org_id, world.org.campaign_a.id),):
        assert table_steps(stored(session_factory, org_id, campaign)) == analytics_steps(
            api, campaign
        )
    rival = stored(session_factory, api.other_org_id, world.other.campaign_a.id)
    assert sum(r["sent"] for r in rival) == 8
    # Nothing new: the next sweep writes nothing until the rows are REFRESH_EVERY old.
    sweep = EmailCampaignsRefresh(lambda: UnitOfWork(session_factory), session_factory, clock)
    assert sweep.run_once() == 0
    clock.advance(seconds=REFRESH_EVERY.total_seconds())
    written = sweep.run_once()
    assert written == session.scalar(select(func.count()).select_from(m.EmailCampaign))
