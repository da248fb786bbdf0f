"""`GET /api/marketing/campaigns/{id}/analytics` over HTTP, on SQLite and PostgreSQL, and the
hourly refresh of the campaigns' stored metrics that `GET /api/marketing/campaigns/{id}`
shows (the world of tests/support/analytics_data.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from jobs.analytics import AnalyticsRefresh
from tests.support.analytics_data import DAY, AnalyticsWorld
from tests.support.api import ApiWorld, make_api_world

SessionFactory = Callable[[], Session]


@pytest.fixture
def api(engine: Engine, session_factory: SessionFactory, clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


@pytest.fixture
def world(
    api: ApiWorld, session: Session, session_factory: SessionFactory, clock: FixedClock
) -> AnalyticsWorld:
    return AnalyticsWorld(
        session,
        session_factory,
        org_id=api.org_id,
        other_org_id=api.other_org_id,
        now=clock.now(),
    )


def z(at: Any) -> str:
    return at.isoformat().replace("+00:00", "Z")


def get(api: ApiWorld, path: str, **params: Any) -> Any:
    answer = api.client.get(path, params=params, headers=api.auth())
    assert answer.status_code == 200, answer.text
    return answer.json()


def refused(api: ApiWorld, path: str, **params: Any) -> tuple[int, str]:
    answer = api.client.get(path, params=params, headers=api.auth())
    return answer.status_code, answer.json()["error"]["message"]


def path(world: AnalyticsWorld) -> str:
    return f"/api/marketing/campaigns/{world.org.campaign_a.id}/analytics"


def test_a_window_answers_the_campaigns_counts_by_step_and_rep(
    api: ApiWorld, world: AnalyticsWorld
) -> None:
    t0 = world.t0

    body = get(api, path(world), since=z(t0 + 3 * DAY), until=z(t0 + 7 * DAY))

    assert body["campaign_name"] == "Q4 lender win-back"
    assert (body["since"], body["until"]) == (z(t0 + 3 * DAY), z(t0 + 7 * DAY))
    assert body["totals"] == {
        "enrolled": 0,
        "sent": 3,
        "delivered": 3,
        "replied": 2,
        "replies": 2,
        "reply_rate": 0.6667,
        "positive": 2,
        "neutral": 0,
        "negative": 0,
        "meetings": 1,
        "bounced_hard": 0,
        "bounced_soft": 1,
        "unsubscribed": 1,
        "complaints": 1,
        "orders_after_reply": 0,
    }
    assert [(s["step"], s["sent"], s["replies"], s["unsubscribed"]) for s in body["steps"]] == [
        (0, 0, 1, 0),
        (1, 2, 1, 1),
        (None, 1, 0, 0),
    ]
    assert [(r["user_id"], r["name"], r["email"], r["sent"]) for r in body["reps"]] == [
        (world.org.ana, "Ana Reyes", "ana@lonestar.test", 3),
        (world.org.ben, None, "ben@lonestar.test", 0),
    ]
    assert body["tracking"] is None


def test_without_a_window_the_answer_covers_the_campaigns_whole_life(
    api: ApiWorld, world: AnalyticsWorld
) -> None:
    body = get(api, path(world))

    # Campaign A was created five days before T0, before its first enrollment.
    assert (body["since"], body["until"]) == (z(world.t0 - 5 * DAY), z(world.now))
    assert (body["totals"]["enrolled"], body["totals"]["sent"]) == (6, 8)
    assert body["totals"]["orders_after_reply"] == 2
    assert body["tracking"] == {
        "tracked_sends": 2,
        "opened": 1,
        "clicked": 1,
        "bot_opens": 1,
        "bot_clicks": 1,
        "open_rate": 0.5,
        "click_rate": 0.5,
    }
    # One end given: the other is the life's.
    since_only = get(api, path(world), since=z(world.t0 + 3 * DAY))
    until_only = get(api, path(world), until=z(world.t0 + 3 * DAY))
    assert (since_only["since"], since_only["until"]) == (z(world.t0 + 3 * DAY), z(world.now))
    assert (until_only["since"], until_only["until"]) == (
        z(world.t0 - 5 * DAY),
        z(world.t0 + 3 * DAY),
    )
    assert since_only["totals"]["sent"] + until_only["totals"]["sent"] == 8


def test_a_reversed_or_empty_window_is_refused_with_422(
    api: ApiWorld, world: AnalyticsWorld
) -> None:
    t0 = world.t0
    since, until = z(t0 + 7 * DAY), z(t0 + 3 * DAY)

    assert refused(api, path(world), since=since, until=until) == (
        422,
        f"the window is reversed or empty: until ({until.replace('Z', '+00:00')}) must come "
        f"after since ({since.replace('Z', '+00:00')})",
    )
    status, message = refused(api, path(world), since=since, until=since)
    assert status == 422
    assert message.startswith("the window is reversed or empty")


def test_a_window_that_starts_in_the_future_is_refused_with_422(
    api: ApiWorld, world: AnalyticsWorld
) -> None:
    tomorrow = world.now + DAY

    assert refused(api, path(world), since=z(tomorrow)) == (
        422,
        f"the window starts in the future ({tomorrow.isoformat()}); analytics only count "
        "what already happened",
    )


def test_a_time_without_a_zone_is_refused_with_422(api: ApiWorld, world: AnalyticsWorld) -> None:
    assert refused(api, path(world), since="2026-11-01T00:00:00", until="2026-11-20T00:00:00Z") == (
        422,
        "give since and until with a time zone, e.g. 2026-12-01T00:00Z",
    )


def test_a_window_the_calendar_cannot_hold_in_utc_is_refused_with_422(
    api: ApiWorld, world: AnalyticsWorld
) -> None:
    # Year 1 at 00:30+01:00 is in year 0 in UTC: refused, not a failure of the query (500).
    status, message = refused(
        api, path(world), since="0001-01-01T00:30:00+01:00", until="0001-01-02T00:00:00Z"
    )

    assert (status, message) == (
        422,
        "the window lies outside the calendar in UTC; give a date after year 1",
    )


def test_an_until_after_now_is_cut_to_now(api: ApiWorld, world: AnalyticsWorld) -> None:
    body = get(api, path(world), since=z(world.t0), until=z(world.now + 30 * DAY))

    assert body["until"] == z(world.now)


def test_another_organizations_campaign_is_not_found(api: ApiWorld, world: AnalyticsWorld) -> None:
    for params in ({}, {"since": z(world.t0), "until": z(world.now)}):
        answer = api.client.get(
            f"/api/marketing/campaigns/{world.other.campaign_a.id}/analytics",
            params=params,
            headers=api.auth(),
        )
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


def test_the_hourly_refresh_writes_the_metrics_the_campaign_shows(
    api: ApiWorld, world: AnalyticsWorld
) -> None:
    campaign = f"/api/marketing/campaigns/{world.org.campaign_a.id}"
    assert get(api, campaign)["metrics"] == {}
    runtime = api.client.app.state.runtime  # type: ignore[attr-defined]
    assert AnalyticsRefresh.NAME in runtime.scheduler.names

    runtime.scheduler.run(AnalyticsRefresh.NAME)

    lifetime = get(api, f"{campaign}/analytics")["totals"]
    assert get(api, campaign)["metrics"] == {**lifetime, "updated_at": world.now.isoformat()}
    other = api.client.get(
        f"/api/marketing/campaigns/{world.other.campaign_a.id}", headers=api.auth(api.other_token)
    ).json()
    assert other["metrics"]["sent"] == 8  # every organization's campaigns are refreshed
