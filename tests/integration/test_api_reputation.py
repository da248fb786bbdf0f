"""Reputation over HTTP (/api/reputation), on SQLite and PostgreSQL: reviews in by REST and
the signed webhook, bad input, templates, escalation rules, settings and trends."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from domain.analytics import AnalyticsWindow
from domain.clock import FixedClock
from domain.contacts import UserRole
from domain.digest_message import render_digest
from domain.reputation import sign_webhook
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import create_token, ensure_user
from tests.support.api import ApiWorld, make_api_world

R = "/api/reputation"


@pytest.fixture
def api(engine: Engine, session_factory: Callable[[], Session], clock: FixedClock) -> ApiWorld:
    return make_api_world(engine, session_factory, clock, start_background=False)


def review(external_id: str, rating: int, text: str, **more: Any) -> dict[str, Any]:
    return {
        "platform": "google",
        "external_id": external_id,
        "author": "Dana W.",
        "rating": rating,
        "text": text,
        **more,
    }


def count_reviews(session_factory: Callable[[], Session]) -> int:
    with session_factory() as s:
        return int(s.scalar(select(func.count(m.Review.id))) or 0)


def cards_of_type(session_factory: Callable[[], Session], kind: str) -> list[m.Card]:
    with session_factory() as s:
        return list(s.scalars(select(m.Card).where(m.Card.type == kind).order_by(m.Card.id)))


def test_a_negative_review_is_stored_scored_and_given_a_drafted_response_card(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    answer = api.client.post(
        f"{R}/reviews",
        json=review("g-1", 1, "Terrible. The report was late and nobody called me back."),
        headers=api.auth(),
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["created"], body["response_cards"], body["escalations"]) == (1, 1, 0)
    stored = api.client.get(f"{R}/reviews/{body['review_ids'][0]}", headers=api.auth()).json()
    assert stored["sentiment"] == "negative"
    assert -1.0 <= stored["sentiment_score"] <= -0.2
    assert stored["sentiment_source"].startswith("offline:")
    assert stored["status"] == "awaiting_response"
    (card,) = cards_of_type(session_factory, "review_response")
    assert card.state == "in_review"
    assert card.action_payload["review_id"] == stored["id"]
    assert card.action_payload["response"].startswith("Hi Dana W., thank you for telling us")
    assert stored["response_card_id"] == card.id


def test_a_happy_five_star_review_gets_no_card_and_a_second_copy_is_a_duplicate(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    good = review("g-2", 5, "Great experience, fast and very professional!")
    first = api.client.post(f"{R}/reviews", json=good, headers=api.auth()).json()
    again = api.client.post(f"{R}/reviews", json={"reviews": [good]}, headers=api.auth()).json()
    assert (first["created"], first["response_cards"]) == (1, 0)
    assert (again["created"], again["duplicates"]) == (
        0,
        [{"platform": "google", "external_id": "g-2"}],
    )
    assert cards_of_type(session_factory, "review_response") == []
    listed = api.client.get(f"{R}/reviews?platform=google", headers=api.auth()).json()
    assert [(r["external_id"], r["sentiment"], r["status"]) for r in listed] == [
        ("g-2", "positive", "new")
    ]


def test_a_batch_with_an_unknown_platform_is_refused_whole(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    batch = {"reviews": [review("ok-1", 2, "Slow."), review("bad", 1, "x", platform="myspace")]}
    answer = api.client.post(f"{R}/reviews", json=batch, headers=api.auth())
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "reviews.1.platform" in message
    assert "unknown platform 'myspace'; use one of google, yelp, facebook, zillow, trustpilot" in (
        message
    )
    assert count_reviews(session_factory) == 0


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"rating": 6}, "rating: Input should be less than or equal to 5"),
        ({"external_id": ""}, "external_id"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_a_bad_review_says_which_field(api: ApiWorld, bad: dict[str, Any], words: str) -> None:
    answer = api.client.post(f"{R}/reviews", json=review("x", 3, "ok") | bad, headers=api.auth())
    assert answer.status_code == 422
    assert words in answer.json()["error"]["message"]


def test_a_read_only_token_cannot_send_reviews(api: ApiWorld) -> None:
    answer = api.client.post(
        f"{R}/reviews", json=review("r", 3, ""), headers=api.auth(api.read_token)
    )
    assert answer.status_code == 403


def sign(secret: str, body: bytes, at: int) -> dict[str, str]:
    stamp = str(at)
    return {
        "X-Salesbot-Timestamp": stamp,
        "X-Salesbot-Signature": sign_webhook(secret, stamp, body),
        "content-type": "application/json",
    }


def test_the_webhook_takes_signed_reviews_and_refuses_bad_missing_or_old_signatures(
    api: ApiWorld, clock: FixedClock, session_factory: Callable[[], Session]
) -> None:
    url = f"{R}/webhook/lonestar"
    body = json.dumps({"reviews": [review("w-1", 2, "Meh, the appraiser was late.")]}).encode()
    now = int(clock.now().timestamp())
    no_secret = api.client.post(url, content=body, headers=sign("guess", body, now))
    assert no_secret.status_code == 401
    assert "no review webhook secret" in no_secret.json()["error"]["message"]

    made = api.client.post(f"{R}/settings/webhook-secret", headers=api.auth())
    assert made.status_code == 201
    secret = made.json()["secret"]
    with session_factory() as s:
        stored = s.get(m.ReputationSetting, api.org_id)
        assert stored is not None
        assert stored.webhook_secret_encrypted is not None
        assert secret.encode() not in stored.webhook_secret_encrypted  # encrypted at rest

    refusals = {
        "wrong": api.client.post(url, content=body, headers=sign("not-the-secret", body, now)),
        "missing": api.client.post(url, content=body, headers={"content-type": "application/json"}),
        "old": api.client.post(url, content=body, headers=sign(secret, body, now - 301)),
        "tampered": api.client.post(
            url, content=body.replace(b"late", b"LATE"), headers=sign(secret, body, now)
        ),
        "other org": api.client.post(
            f"{R}/webhook/rival", content=body, headers=sign(secret, body, now)
        ),
    }
    assert {k: r.status_code for k, r in refusals.items()} == dict.fromkeys(refusals, 401)
    assert "invalid request signature" in refusals["wrong"].json()["error"]["message"]
    assert "more than 5 minutes" in refusals["old"].json()["error"]["message"]
    assert count_reviews(session_factory) == 0

    accepted = api.client.post(url, content=body, headers=sign(secret, body, now - 60))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["created"] == 1
    listed = api.client.get(f"{R}/reviews", headers=api.auth()).json()
    assert [(r["external_id"], r["source"]) for r in listed] == [("w-1", "webhook")]


def test_templates_are_checked_in_the_sandbox_and_draft_the_responses(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    bad = api.client.post(
        f"{R}/templates",
        json={"scenario": "negative", "name": "Bad", "body": "Hi {{ first_name }}"},
        headers=api.auth(),
    )
    assert bad.status_code == 422
    assert "unknown variable(s) first_name" in bad.json()["error"]["message"]
    made = api.client.post(
        f"{R}/templates",
        json={
            "scenario": "negative",
            "name": "Sorry",
            "body": "Sorry, {{ reviewer_name }}: {{ rating }} stars on {{ platform }}. "
            "— {{ firm_name }}",
        },
        headers=api.auth(),
    )
    assert made.status_code == 201, made.text
    template_id = made.json()["id"]
    put = api.client.put(f"{R}/settings", json={"firm_name": "Lone Star"}, headers=api.auth())
    assert put.json()["firm_name"] == "Lone Star"
    api.client.post(f"{R}/reviews", json=review("t-1", 1, "Awful"), headers=api.auth())
    (card,) = cards_of_type(session_factory, "review_response")
    assert card.action_payload["response"] == "Sorry, Dana W.: 1 stars on Google. — Lone Star"
    assert card.action_payload["template"] == "Sorry"
    changed = api.client.patch(
        f"{R}/templates/{template_id}", json={"is_active": False}, headers=api.auth()
    )
    assert changed.json()["is_active"] is False
    assert api.client.delete(f"{R}/templates/{template_id}", headers=api.auth()).status_code == 204
    assert api.client.get(f"{R}/templates", headers=api.auth()).json() == []


def test_escalation_rules_are_checked_admins_only_and_route_a_review(
    api: ApiWorld, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session:
        manager = ensure_user(session, api.org_id, email="am@lonestar.example.com")
        lawyer = ensure_user(session, api.org_id, email="legal@lonestar.example.com")
        rep = ensure_user(session, api.org_id, email="rep@lonestar.example.com")
        _, rep_token = create_token(session, api.org_id, name="rep", user_id=rep)
        session.commit()
    assert (
        api.client.post(
            f"{R}/escalation-rules",
            json={"kind": "keyword", "pattern": "late", "route_to": "account_manager"},
            headers=api.auth(rep_token),
        ).status_code
        == 403
    )
    backref = api.client.post(
        f"{R}/escalation-rules",
        json={"kind": "keyword", "pattern": r"(a)\1", "route_to": "account_manager"},
        headers=api.auth(),
    )
    assert backref.status_code == 422
    assert "RE2 has no backreferences" in backref.json()["error"]["message"]
    no_user = api.client.post(
        f"{R}/escalation-rules",
        json={"kind": "rating", "pattern": "1", "route_to": "user"},
        headers=api.auth(),
    )
    assert no_user.status_code == 422
    for rule in (
        {"kind": "staff", "pattern": "Bob Smith", "route_to": "account_manager"},
        {"kind": "legal", "pattern": "", "route_to": "legal"},
        {"kind": "rating", "pattern": "1", "route_to": "account_manager"},
    ):
        made = api.client.post(f"{R}/escalation-rules", json=rule, headers=api.auth())
        assert made.status_code == 201, made.text
    api.client.put(
        f"{R}/settings",
        json={"account_manager_user_id": manager, "legal_user_id": lawyer},
        headers=api.auth(),
    )
    sent = api.client.post(
        f"{R}/reviews",
        json={
            "reviews": [
                review("e-1", 2, "bob  smith was rude to me."),
                review("e-2", 3, "I am calling my attorney about this appraisal."),
                review("e-3", 4, "Fine overall."),
            ]
        },
        headers=api.auth(),
    ).json()
    assert sent["escalations"] == 2
    stored = {
        r["external_id"]: r for r in api.client.get(f"{R}/reviews", headers=api.auth()).json()
    }
    assert (stored["e-1"]["escalated"], stored["e-1"]["escalated_to"]) == (True, "account_manager")
    assert "names staff member 'Bob Smith'" in stored["e-1"]["escalation_reason"]
    assert (stored["e-2"]["escalated"], stored["e-2"]["escalated_to"]) == (True, "legal")
    assert stored["e-3"]["escalated"] is False
    escalations = cards_of_type(session_factory, "review_escalation")
    assert [c.action_payload["assignee_user_id"] for c in escalations] == [manager, lawyer]
    # The legal review's response is drafted for legal's scenario.
    responses = {
        c.action_payload["review_id"]: c for c in cards_of_type(session_factory, "review_response")
    }
    assert responses[stored["e-2"]["id"]].action_payload["scenario"] == "legal"
    filtered = api.client.get(f"{R}/reviews?escalated=true", headers=api.auth()).json()
    assert sorted(r["external_id"] for r in filtered) == ["e-1", "e-2"]


def test_trends_count_days_ratings_sentiment_and_responses(
    api: ApiWorld, clock: FixedClock, session_factory: Callable[[], Session]
) -> None:
    today = clock.now()
    api.client.post(
        f"{R}/reviews",
        json={"reviews": [review("d1-a", 5, "Great!"), review("d1-b", 1, "Awful.")]},
        headers=api.auth(),
    )
    clock.advance(days=1)
    api.client.post(f"{R}/reviews", json=review("d2-a", 3, ""), headers=api.auth())
    since = today.date().isoformat()
    until = (today + timedelta(days=1)).date().isoformat()
    trends = api.client.get(f"{R}/trends?since={since}&until={until}", headers=api.auth())
    assert trends.status_code == 200, trends.text
    data = trends.json()
    assert [(d["reviews"], d["average_rating"]) for d in data["days"]] == [(2, 3.0), (1, 3.0)]
    totals = data["totals"]
    assert (totals["reviews"], totals["average_rating"]) == (3, 3.0)
    assert (totals["positive"], totals["neutral"], totals["negative"]) == (1, 1, 1)
    assert (totals["needing_response"], totals["responded"], totals["unresponded"]) == (2, 0, 2)
    assert totals["response_rate"] == 0.0
    bad = api.client.get(f"{R}/trends?since=yesterday", headers=api.auth())
    assert bad.status_code == 422
    backwards = api.client.get(f"{R}/trends?since={until}&until={since}", headers=api.auth())
    assert backwards.status_code == 422


def test_the_digest_reputation_line_matches_the_trends_api_for_the_same_window(
    api: ApiWorld, clock: FixedClock, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session:
        manager = ensure_user(
            session, api.org_id, email="am@lonestar.example.com", role=UserRole.REP
        )
        session.commit()
    api.client.post(
        f"{R}/escalation-rules",
        json={"kind": "rating", "pattern": "1", "route_to": "account_manager"},
        headers=api.auth(),
    )
    api.client.put(f"{R}/settings", json={"account_manager_user_id": manager}, headers=api.auth())
    api.client.post(
        f"{R}/reviews",
        json={
            "reviews": [
                review("a", 5, "Great!"),
                review("b", 1, "Awful, the worst."),
                review("c", 2, "Slow."),
                review("d", 4, "Good."),
            ]
        },
        headers=api.auth(),
    )
    day = clock.now().astimezone(UTC).date()
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    until = since + timedelta(days=1)
    totals = api.client.get(
        f"{R}/trends",
        params={"since": since.isoformat(), "until": until.isoformat()},
        headers=api.auth(),
    ).json()["totals"]
    with UnitOfWork(session_factory) as uow:
        facts = uow.analytics.digest_facts(
            api.org_id,
            AnalyticsWindow(since=since, until=until),
            time_zone="UTC",
            now=clock.now(),
        )
    line = facts.reputation
    assert line is not None
    assert (
        (line.reviews, line.average_rating, line.negative, line.unresponded, line.escalated)
        == (
            totals["reviews"],
            totals["average_rating"],
            totals["negative"],
            totals["unresponded"],
            totals["escalated"],
        )
        == (4, 3.0, 2, 2, 1)
    )
    message = render_digest(
        facts, frequency="daily", time_zone="UTC", title="Digest", permalinks={}
    )
    shown = json.dumps(message.blocks, ensure_ascii=False)
    assert (
        "*⭐ Reputation* · 4 new reviews, average 3.0★ · 2 negative · 2 awaiting a response · "
        "1 escalated" in shown
    )


def test_a_review_stored_by_another_request_meanwhile_is_a_conflict_not_a_crash(
    api: ApiWorld, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    # Two requests that both looked the review up before either stored it: the second insert
    # meets the unique key, which the repository reports as a Conflict (the service then
    # stores again and reports the review as a duplicate).
    from domain.errors import Conflict

    row = {
        "platform": "zillow",
        "external_id": "race-1",
        "rating": 2,
        "text": "Late report.",
        "sentiment": "negative",
        "sentiment_score": -0.6,
        "sentiment_source": "offline",
        "posted_at": clock.now(),
        "received_at": clock.now(),
    }
    with UnitOfWork(session_factory) as uow:
        uow.reviews.add_many(api.org_id, [row])
        uow.commit()
    with UnitOfWork(session_factory) as uow, pytest.raises(Conflict):
        uow.reviews.add_many(api.org_id, [row])
    assert count_reviews(session_factory) == 1
