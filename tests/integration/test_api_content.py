"""The content calendar over HTTP (/api/marketing/content…), on SQLite and PostgreSQL: content
and its scheduled posts, the due morning in the organization's time zone, bad input, the
calendar of a window, and organization isolation."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.analytics import AnalyticsWindow
from domain.clock import FixedClock
from domain.digest_message import render_digest
from sandbox.slack_api import DEFAULT_BOT_TOKEN
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.api import ApiWorld, make_api_world
from tests.support.slack import ServedSlack

M = "/api/marketing"
# Monday 2026-12-07 10:00 in Chicago (CST, UTC−6).
MONDAY = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    clock._at = MONDAY
    world = make_api_world(engine, session_factory, clock, start_background=False)
    with session_factory() as session:
        org = session.get(m.Organization, world.org_id)
        assert org is not None
        org.cadence_settings = {"timezone": "America/Chicago", "window_start": "08:30"}
        session.add(
            m.MarketingCampaign(
                org_id=world.org_id,
                name="Lender Update",
                goal="nurture",
                channels=["email", "linkedin"],
                cadence_days=[0, 4, 10],
            )
        )
        session.commit()
    return world


def campaign_id(session_factory: Callable[[], Session], org_id: int) -> int:
    with session_factory() as session:
        row = session.query(m.MarketingCampaign).filter_by(org_id=org_id).one()
        return row.id


def post_item(api: ApiWorld, **more: Any) -> dict[str, Any]:
    answer = api.client.post(
        f"{M}/content",
        json={
            "content_type": "social_post",
            "title": "Turn times in Travis County",
            "body": "Turn times are down to 5 days in Travis County. #appraisal",
            "link": "https://lonestar.example.com/blog/turn-times",
            **more,
        },
        headers=api.auth(),
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def schedule(api: ApiWorld, content_id: int, channel: str, at: str) -> Any:
    return api.client.post(
        f"{M}/content/{content_id}/schedule",
        json={"channel": channel, "scheduled_for": at},
        headers=api.auth(),
    )


def test_a_scheduled_post_is_due_on_the_organizations_morning_of_its_day(api: ApiWorld) -> None:
    item = post_item(api)
    assert item["status"] == "draft"
    answer = schedule(api, item["id"], "linkedin", "2026-12-09T15:00:00-06:00")
    assert answer.status_code == 201, answer.text
    entry = answer.json()
    assert entry["status"] == "scheduled"
    assert entry["channel"] == "linkedin"
    assert entry["title"] == "Turn times in Travis County"
    # Wednesday 08:30 in Chicago: the send window's start of the cadence settings.
    assert entry["due_at"] == "2026-12-09T14:30:00Z"
    listed = api.client.get(f"{M}/content/{item['id']}/schedule", headers=api.auth()).json()
    assert [e["id"] for e in listed] == [entry["id"]]


def test_a_channel_the_campaign_does_not_use_is_refused_naming_its_channels(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    item = post_item(api, campaign_id=campaign_id(session_factory, api.org_id))
    answer = schedule(api, item["id"], "tiktok", "2026-12-09T15:00:00Z")
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert message == (
        "campaign “Lender Update” does not use tiktok: its channels are email, linkedin. "
        "Schedule it on one of those, or add tiktok to the campaign."
    )
    assert schedule(api, item["id"], "linkedin", "2026-12-09T15:00:00Z").status_code == 201


def test_an_unknown_channel_or_type_is_refused_with_the_known_ones(api: ApiWorld) -> None:
    bad_type = api.client.post(
        f"{M}/content", json={"content_type": "tweet", "title": "x"}, headers=api.auth()
    )
    assert bad_type.status_code == 422
    assert "unknown content type 'tweet'; use one of blog, social_post" in bad_type.text
    item = post_item(api)
    bad_channel = schedule(api, item["id"], "myspace", "2026-12-09T15:00:00Z")
    assert bad_channel.status_code == 422
    assert "unknown channel 'myspace'; use one of email, linkedin, substack" in bad_channel.text


def test_another_organization_sees_nothing_of_it(api: ApiWorld) -> None:
    item = post_item(api)
    entry = schedule(api, item["id"], "blog", "2026-12-08T15:00:00Z").json()
    other = api.auth(api.other_token)
    assert api.client.get(f"{M}/content/{item['id']}", headers=other).status_code == 404
    assert api.client.get(f"{M}/content", headers=other).json() == []
    assert (
        api.client.get(
            f"{M}/content/{item['id']}/schedule/{entry['id']}", headers=other
        ).status_code
        == 404
    )
    foreign = api.client.post(
        f"{M}/content/{item['id']}/schedule",
        json={"channel": "blog", "scheduled_for": "2026-12-08T15:00:00Z"},
        headers=other,
    )
    assert foreign.status_code == 404
    assert api.client.get(f"{M}/content-schedule", headers=other).json() == []


def test_the_calendar_answers_a_window_and_by_default_this_local_week(api: ApiWorld) -> None:
    item = post_item(api)
    times = [
        "2026-12-06T23:00:00Z",  # Sunday 17:00 in Chicago: last week
        "2026-12-08T15:00:00Z",  # Tuesday
        "2026-12-14T05:00:00Z",  # Sunday 23:00 in Chicago: still this week
        "2026-12-14T07:00:00Z",  # Monday 01:00 in Chicago: next week
    ]
    ids = [schedule(api, item["id"], "blog", at).json()["id"] for at in times]
    week = api.client.get(f"{M}/content-schedule", headers=api.auth()).json()
    assert [e["id"] for e in week] == ids[1:3]
    window = api.client.get(
        f"{M}/content-schedule",
        params={"from": "2026-12-06", "to": "2026-12-08"},
        headers=api.auth(),
    ).json()
    assert [e["id"] for e in window] == ids[:2]
    too_long = api.client.get(
        f"{M}/content-schedule",
        params={"from": "2026-01-01", "to": "2026-12-08"},
        headers=api.auth(),
    )
    assert too_long.status_code == 422
    assert too_long.json()["error"]["message"] == "a calendar window is at most 92 days."
    paged = [
        api.client.get(
            f"{M}/content-schedule",
            params={"from": "2026-12-06", "to": "2026-12-15", "limit": 3, "offset": offset},
            headers=api.auth(),
        ).json()
        for offset in (0, 3)
    ]
    assert [[e["id"] for e in page] for page in paged] == [ids[:3], ids[3:]]
    too_big = api.client.get(f"{M}/content-schedule", params={"limit": 1001}, headers=api.auth())
    assert too_big.status_code == 422


def test_a_post_recorded_done_keeps_its_url_and_moving_it_schedules_it_again(
    api: ApiWorld,
) -> None:
    item = post_item(api)
    entry = schedule(api, item["id"], "linkedin", "2026-12-08T15:00:00Z").json()
    url = f"{M}/content/{item['id']}/schedule/{entry['id']}"
    done = api.client.patch(
        url,
        json={"status": "done", "posted_url": "https://www.linkedin.com/posts/1"},
        headers=api.auth(),
    )
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["posted_url"]) == (
        "done",
        "https://www.linkedin.com/posts/1",
    )
    again = api.client.patch(url, json={"status": "done"}, headers=api.auth())
    assert again.json()["status"] == "done"
    bad = api.client.patch(url, json={"status": "due"}, headers=api.auth())
    assert bad.status_code == 422
    moved = api.client.patch(
        url, json={"scheduled_for": "2026-12-10T15:00:00Z"}, headers=api.auth()
    ).json()
    assert (moved["status"], moved["due_at"]) == ("scheduled", "2026-12-10T14:30:00Z")
    assert api.client.delete(url, headers=api.auth()).status_code == 204
    assert api.client.get(url, headers=api.auth()).status_code == 404


def test_content_is_changed_and_deleted_with_its_schedule(api: ApiWorld) -> None:
    item = post_item(api)
    schedule(api, item["id"], "blog", "2026-12-08T15:00:00Z")
    changed = api.client.patch(
        f"{M}/content/{item['id']}", json={"status": "ready", "title": "New"}, headers=api.auth()
    ).json()
    assert (changed["status"], changed["title"]) == ("ready", "New")
    read_only = api.client.delete(f"{M}/content/{item['id']}", headers=api.auth(api.read_token))
    assert read_only.status_code == 403
    assert api.client.delete(f"{M}/content/{item['id']}", headers=api.auth()).status_code == 204
    assert api.client.get(f"{M}/content-schedule", headers=api.auth()).json() == []


def test_the_marketing_channel_is_set_and_checked(api: ApiWorld) -> None:
    assert api.client.get(f"{M}/content-settings", headers=api.auth()).json() == {
        "channel_id": None
    }
    ok = api.client.put(
        f"{M}/content-settings", json={"channel_id": "C0MARKET"}, headers=api.auth()
    )
    # This server has no Slack: the channel is stored, and the answer says it was not checked.
    assert ok.json() == {
        "channel_id": "C0MARKET",
        "warning": "Salesbot could not check <#C0MARKET>: Slack is not connected to this server.",
    }
    assert api.client.get(f"{M}/content-settings", headers=api.auth()).json() == {
        "channel_id": "C0MARKET"
    }
    bad = api.client.put(
        f"{M}/content-settings", json={"channel_id": "#marketing"}, headers=api.auth()
    )
    assert bad.status_code == 422


MARKETING = "C0MARKET01"
OUTSIDE = "C0OUTSIDE1"
ARCHIVED = "C0ARCHIVE1"


@pytest.fixture
def with_slack(
    engine: Engine,
    session_factory: Callable[[], Session],
    clock: FixedClock,
    served_slack: ServedSlack,
) -> ApiWorld:
    slack = served_slack.stand_in
    slack.reset()
    slack.add_channel(MARKETING, "marketing")
    slack.add_channel(OUTSIDE, "sales-floor", is_member=False)
    slack.add_channel(ARCHIVED, "old-marketing", is_archived=True)
    settings = {"SLACK_API_URL": served_slack.api_url, "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN}
    return make_api_world(engine, session_factory, clock, start_background=False, settings=settings)


def test_the_marketing_channel_is_checked_with_slack(with_slack: ApiWorld) -> None:
    api = with_slack

    def put(channel_id: str) -> Any:
        return api.client.put(
            f"{M}/content-settings", json={"channel_id": channel_id}, headers=api.auth()
        )

    assert put(MARKETING).json() == {"channel_id": MARKETING, "warning": None}
    outside = put(OUTSIDE)
    assert outside.json() == {
        "channel_id": OUTSIDE,
        "warning": f"Salesbot is not in <#{OUTSIDE}>: /invite @Salesbot there so cards can "
        "be posted.",
    }
    unknown = put("C0NOSUCH01").json()
    assert unknown["channel_id"] == "C0NOSUCH01"
    assert unknown["warning"].startswith("Salesbot cannot see <#C0NOSUCH01>")
    archived = put(ARCHIVED)
    assert archived.status_code == 422
    assert "archived" in archived.text
    # The archived channel was refused before anything was stored.
    assert api.client.get(f"{M}/content-settings", headers=api.auth()).json() == {
        "channel_id": "C0NOSUCH01"
    }


def test_the_digests_week_of_content_is_what_the_calendar_answers(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    item = post_item(api)
    other = post_item(api, content_type="blog", title="Q4 <market> update")
    ids = [
        schedule(api, item["id"], "linkedin", "2026-12-08T15:00:00Z").json()["id"],
        schedule(api, other["id"], "blog", "2026-12-10T18:00:00Z").json()["id"],
    ]
    schedule(api, item["id"], "blog", "2026-12-15T15:00:00Z")  # next week
    api.client.patch(
        f"{M}/content/{item['id']}/schedule/{ids[0]}", json={"status": "done"}, headers=api.auth()
    )
    # Wednesday's daily digest, read in Chicago: Tuesday's period, this week's content.
    window = AnalyticsWindow(
        since=datetime(2026, 12, 8, 6, 0, tzinfo=UTC), until=datetime(2026, 12, 9, 6, 0, tzinfo=UTC)
    )
    with UnitOfWork(session_factory) as uow:
        facts = uow.analytics.digest_facts(
            api.org_id, window, time_zone="America/Chicago", now=clock.now()
        )
    week = facts.content
    assert week is not None
    calendar = api.client.get(
        f"{M}/content-schedule",
        params={"from": week.since.isoformat(), "to": week.until.isoformat()},
        headers=api.auth(),
    ).json()
    assert [(i.schedule_id, i.channel.value, i.status.value) for i in week.items] == [
        (e["id"], e["channel"], e["status"]) for e in calendar
    ]
    assert [i.schedule_id for i in week.items] == ids
    assert (week.since, week.until) == (
        datetime(2026, 12, 7, 6, 0, tzinfo=UTC),
        datetime(2026, 12, 14, 6, 0, tzinfo=UTC),
    )
    message = render_digest(
        facts, frequency="daily", time_zone="America/Chicago", title="Digest", permalinks={}
    )
    shown = json.dumps(message.blocks, ensure_ascii=False)
    assert "*🗓️ This week's content* · 2 scheduled posts, 1 done" in shown
    assert "• Tue Dec 8, 09:00 · LinkedIn · Turn times in Travis County · _done_" in shown
    assert "• Thu Dec 10, 12:00 · the blog · Q4 &lt;market&gt; update · _scheduled_" in shown


def test_a_posted_url_given_over_rest_is_checked_like_the_cards_form(api: ApiWorld) -> None:
    item = post_item(api)
    entry = schedule(api, item["id"], "linkedin", "2026-12-08T15:00:00Z").json()
    url = f"{M}/content/{item['id']}/schedule/{entry['id']}"
    for bad in ("javascript:alert(1)", "https://a.example><!channel><https://evil.example|Login"):
        answer = api.client.patch(
            url, json={"status": "done", "posted_url": bad}, headers=api.auth()
        )
        assert answer.status_code == 422, answer.text
        assert "web address" in answer.json()["error"]["message"]
    kept = api.client.get(url, headers=api.auth()).json()
    assert (kept["status"], kept["posted_url"]) == ("scheduled", None)


def test_a_null_for_a_field_content_cannot_be_without_is_refused_naming_it(
    api: ApiWorld,
) -> None:
    item = post_item(api)
    for field in ("content_type", "title", "body", "status", "tags"):
        answer = api.client.patch(
            f"{M}/content/{item['id']}", json={field: None}, headers=api.auth()
        )
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.json()["error"]["message"]
    cleared = api.client.patch(
        f"{M}/content/{item['id']}", json={"link": None, "campaign_id": None}, headers=api.auth()
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["link"] is None
    assert (
        api.client.get(f"{M}/content/{item['id']}", headers=api.auth()).json()["title"]
        == (item["title"])
    )


def test_a_time_at_the_edge_of_the_calendar_is_refused_not_an_error(api: ApiWorld) -> None:
    item = post_item(api)
    for at in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00", "1900-01-01T00:00:00Z"):
        answer = schedule(api, item["id"], "blog", at)
        assert answer.status_code == 422, (at, answer.text)
        assert "scheduled_for" in answer.text
    entry = schedule(api, item["id"], "blog", "2026-12-08T15:00:00Z").json()
    moved = api.client.patch(
        f"{M}/content/{item['id']}/schedule/{entry['id']}",
        json={"scheduled_for": "0001-01-01T00:00:00Z"},
        headers=api.auth(),
    )
    assert moved.status_code == 422, moved.text
    for params in ({"from": "9999-12-30", "to": "9999-12-31"}, {"to": "9999-12-31"}):
        window = api.client.get(f"{M}/content-schedule", params=params, headers=api.auth())
        assert window.status_code == 422, (params, window.text)
