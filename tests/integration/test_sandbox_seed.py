"""The sandbox's firm: seeded through the CSV import and the catalog, the same each time, once;
and the sandbox start that connects every rep's Gmail and mints a token, on both databases."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.sandbox import SANDBOX_TOKEN_NAME, start_sandbox
from domain.accounts import Accounts
from domain.catalog import Catalog
from domain.clock import FixedClock, ShiftedClock
from domain.content_service import ContentCalendar
from domain.deps import Deps
from domain.reputation import Scenario
from sandbox.seed import (
    CAMPAIGN_NAME,
    REPS,
    REVIEW_CHANNEL_ID,
    STALE_DAYS,
    TEMPLATES,
    business_moment,
    make_firm,
    seed_firm,
)
from sandbox.seed_marketing import (
    CONTENT,
    MARKETING_CHANNEL_ID,
    RESPONSE_TEMPLATES,
    REVIEWS,
    next_business_day,
)
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import create_org
from tests.support.api import make_settings

SessionFactory = Callable[[], Session]


def test_the_firm_is_the_same_every_time_and_shaped_like_an_appraisal_firms_crm() -> None:
    first, again = make_firm(date(2026, 11, 25)), make_firm(date(2026, 11, 25))
    assert first == again
    assert len(first.clients) == 50
    assert len(first.contacts) == 200
    assert Counter(c.client_type for c in first.clients) == {
        "lender": 20,
        "credit_union": 12,
        "broker": 7,
        "amc": 11,
    }
    assert len({c.email for c in first.contacts}) == 200
    assert all(c.domain.endswith(".example") for c in first.clients)
    ordered = {o.ordered for o in first.orders}
    assert min(ordered) >= date(2026, 11, 25) - timedelta(days=730)
    assert max(ordered) <= date(2026, 11, 25)
    stale = [c for c in first.clients if c.last_order_days and c.last_order_days > STALE_DAYS]
    assert len(stale) == 14
    assert sum(1 for c in first.clients if c.last_order_days is None) == 3


def test_seeding_imports_the_crm_and_makes_the_campaign_once(
    session_factory: SessionFactory, session: Session, clock: FixedClock
) -> None:
    org = create_org(session, slug="sandbox", name="Sandbox Appraisals")
    session.commit()

    first = seed_firm(session_factory, org_id=org.id, clock=clock)
    second = seed_firm(session_factory, org_id=org.id, clock=clock)

    firm = make_firm(clock.now().date())
    assert (first.clients, first.contacts, first.orders) == (50, 200, len(firm.orders))
    assert first.made[: len(TEMPLATES) + 2] == [
        "crm",
        *(f"template {t.name}" for t in TEMPLATES),
        f"campaign {CAMPAIGN_NAME}",
    ]
    assert second.made == []
    assert (second.clients, second.contacts, second.orders) == (50, 200, len(firm.orders))
    assert second.campaign_id == first.campaign_id
    assert second.rep_user_ids == first.rep_user_ids
    with session_factory() as check:
        users = check.scalars(select(m.User).where(m.User.org_id == org.id)).all()
        campaign = check.get(m.MarketingCampaign, first.campaign_id)
        templates = check.scalar(select(func.count()).where(m.EmailTemplate.org_id == org.id))
        orders = check.scalar(select(func.count()).where(m.AppraisalOrder.org_id == org.id))
    assert sorted((u.email, u.slack_user_id, u.role) for u in users) == sorted(
        (r.email, r.slack_user_id, r.role.value) for r in REPS
    )
    assert templates == 4
    assert orders == len(firm.orders)
    assert campaign is not None
    assert (campaign.status, campaign.review_channel_id) == ("draft", REVIEW_CHANNEL_ID)
    assert campaign.cadence_days == [0, 4, 10, 21]


def test_seeding_fills_the_content_calendar_and_reputation_once(
    session_factory: SessionFactory,
    session: Session,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # At INFO, as `salesbot serve` logs: every log line's extra fields must be writable.
    caplog.set_level(logging.INFO)
    org = create_org(session, slug="sandbox", name="Sandbox Appraisals")
    session.commit()

    first = seed_firm(session_factory, org_id=org.id, clock=clock)
    second = seed_firm(session_factory, org_id=org.id, clock=clock)

    assert first.marketing.made == [
        "marketing channel",
        *(f"content {c.title}" for c in CONTENT),
        "reputation settings",
        "response templates",
        "escalation rules",
        "6 reviews (3 response cards, 2 escalations)",
    ]
    assert second.made == []
    assert (second.marketing.content_items, second.marketing.scheduled_posts) == (3, 4)
    assert second.marketing.reviews == len(REVIEWS) == 6
    # Wednesday 2026-11-25 (the clock): the LinkedIn post is Thursday's, at 10:00 in the
    # organization's zone (UTC: it has no cadence settings); the rest follow on business days.
    assert next_business_day(date(2026, 11, 27)) == date(2026, 11, 30)
    assert first.marketing.linkedin_post_at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    admin_id, maria_id = (first.rep_user_ids[r.email] for r in REPS[:2])
    calendar = ContentCalendar(Deps(uow=lambda: UnitOfWork(session_factory), clock=clock))
    week = calendar.this_week(org.id)
    linkedin, blog, _ = (c.title for c in CONTENT)
    assert [(e.channel.value, e.title, e.status.value) for e in week.entries] == [
        ("linkedin", linkedin, "scheduled"),
        ("blog", blog, "scheduled"),
        ("facebook", blog, "scheduled"),
    ]
    assert calendar.settings(org.id).channel_id == MARKETING_CHANNEL_ID
    with session_factory() as check:
        posts = check.scalars(
            select(m.ContentSchedule).where(m.ContentSchedule.org_id == org.id)
        ).all()
        settings = check.get(m.ReputationSetting, org.id)
        templates = check.scalars(
            select(m.ReviewResponseTemplate).where(m.ReviewResponseTemplate.org_id == org.id)
        ).all()
        rules = check.scalars(
            select(m.ReviewEscalationRule).where(m.ReviewEscalationRule.org_id == org.id)
        ).all()
        reviews = {
            r.external_id: r
            for r in check.scalars(select(m.Review).where(m.Review.org_id == org.id))
        }
        cards = check.scalars(
            select(m.Card).where(m.Card.org_id == org.id, m.Card.type.like("review_%"))
        ).all()
    assert sorted(p.channel for p in posts) == ["blog", "facebook", "instagram", "linkedin"]
    assert settings is not None
    assert (settings.account_manager_user_id, settings.legal_user_id, settings.channel_id) == (
        admin_id,
        maria_id,
        "C0SBXREPUTE",
    )
    assert Counter(t.scenario for t in templates) == Counter(
        s.value for s, _, _ in RESPONSE_TEMPLATES
    )
    assert set(Counter(t.scenario for t in templates).values()) == {2}
    assert {t.scenario for t in templates} == {s.value for s in Scenario}
    assert sorted((r.kind, r.route_to) for r in rules) == [
        ("legal", "account_manager"),
        ("staff", "account_manager"),
    ]
    zillow, lawsuit, staff = reviews["zl-20931"], reviews["g-58812"], reviews["y-7741"]
    assert (zillow.platform, zillow.rating, zillow.source) == ("zillow", 2, "csv")
    assert zillow.response_card_id is not None
    assert not zillow.escalated
    assert (lawsuit.escalated, lawsuit.escalated_user_id) == (True, admin_id)
    assert (lawsuit.escalation_reason or "").startswith("legal terms")
    assert (staff.escalated, staff.escalated_user_id) == (True, admin_id)
    positive = [r for r in reviews.values() if r.rating == 5]
    assert len(positive) == 3
    assert all(r.sentiment == "positive" and r.response_card_id is None for r in positive)
    by_type = Counter(c.type for c in cards)
    assert by_type == {"review_response": 3, "review_escalation": 2}
    escalation = next(c for c in cards if c.id == lawsuit.escalation_card_id)
    assert escalation.action_payload["assignee_user_id"] == admin_id
    response = next(c for c in cards if c.id == zillow.response_card_id)
    assert response.action_payload["post_channel_id"] == "C0SBXREPUTE"
    assert response.action_payload["template"] == "Apology, call us"
    assert "Hi Rebecca T." in response.action_payload["response"]
    assert {c.state for c in cards} == {"in_review"}
    assert any(r.getMessage() == "reviews stored" for r in caplog.records)


def test_the_campaigns_audience_is_the_loan_officers_of_the_stale_lenders(
    session_factory: SessionFactory, session: Session, clock: FixedClock
) -> None:
    org = create_org(session, slug="sandbox", name="Sandbox Appraisals")
    session.commit()
    seeded = seed_firm(session_factory, org_id=org.id, clock=clock)
    deps = Deps(uow=lambda: UnitOfWork(session_factory), clock=clock)
    with UnitOfWork(session_factory) as uow:
        campaign = uow.campaigns.get(org.id, seeded.campaign_id)

    audience = Catalog(deps).calculate_audience_size(org.id, campaign.criteria(), sample_size=50)

    assert audience.count == 18
    assert {member.role_code for member in audience.sample} == {"LO"}


def test_the_sandbox_starts_ready_and_a_second_start_seeds_nothing_more(
    committed_engine: Engine,
) -> None:
    url = committed_engine.url.render_as_string(hide_password=False)
    settings = make_settings(url, PUBLIC_BASE_URL="http://localhost:3000")
    tokens = []
    issues: list[int | None] = []
    for attempt in range(2):
        sandbox = start_sandbox(settings, clock=ShiftedClock())
        try:
            assert sandbox.seed is not None
            assert sandbox.seed.seeded_now is (attempt == 0)
            assert sandbox.connected_mailboxes == [r.email for r in REPS]
            assert [c.id for c in sandbox.slack.channels() if c.id == REVIEW_CHANNEL_ID] == [
                REVIEW_CHANNEL_ID
            ]
            assert sandbox.slack.user("U0SBXMARIA1").email == REPS[1].email
            assert {"C0SBXMARKET", "C0SBXREPUTE"} <= {c.id for c in sandbox.slack.channels()}
            assert sandbox.seed.marketing.reviews == 6
            issues.append(sandbox.seed.marketing.newsletter_issue_id)
            tokens.append(sandbox.api_token)
        finally:
            sandbox.stop()
    with Session(committed_engine) as session:
        accounts = session.scalars(select(m.GmailAccount).order_by(m.GmailAccount.email)).all()
        clients = session.scalar(select(func.count()).select_from(m.Client))
        readers = set(session.scalars(select(m.Review.sentiment_source)))
        newsletters = session.scalars(select(m.Newsletter)).all()
        issue_rows = session.scalars(select(m.NewsletterIssue)).all()
        sentiments = dict(session.execute(select(m.Review.external_id, m.Review.sentiment)).all())
        review_cards = session.scalar(
            select(func.count()).select_from(m.Card).where(m.Card.type.like("review_%"))
        )
    assert sorted(a.email for a in accounts) == sorted(r.email for r in REPS)
    assert {a.status for a in accounts} == {"connected"}
    assert {a.min_send_interval_seconds for a in accounts} == {0}
    assert clients == 50
    # Read by Claude's stand-in, as the running app reads them; the second start added none.
    assert {r.split(":")[0] for r in readers} == {"claude"}
    assert review_cards == 5
    # The newsletter's issue is submitted once the mailboxes are connected, and left in
    # review (its preview card waits in #marketing); the second start found it there.
    assert [(n.name, n.slack_channel_id) for n in newsletters] == [("Lender Update", "C0SBXMARKET")]
    assert [(i.id, i.status) for i in issue_rows] == [(issues[0], "in_review")]
    assert issues[0] == issues[1]
    assert issue_rows[0].audience_count == 196  # 200 contacts, 3 opted out, 1 bounced
    assert sentiments == {
        "zl-20931": "negative",
        "g-58812": "negative",
        "y-7741": "neutral",
        "g-58790": "positive",
        "tp-3310": "positive",
        "fb-1187": "positive",
    }
    assert tokens[0] != tokens[1]
    found = Accounts(
        uow=lambda: UnitOfWork(sessionmaker(committed_engine)), clock=FixedClock(datetime.now(UTC))
    )
    assert found.authenticate_token(tokens[0]) is None
    identity = found.authenticate_token(tokens[1])
    assert identity is not None
    _, listed = found.list_tokens("sandbox")
    assert [(t.name, t.revoked_at is None) for t in listed] == [
        (SANDBOX_TOKEN_NAME, False),
        (SANDBOX_TOKEN_NAME, True),
    ]


def test_a_business_moment_is_ten_in_the_morning_on_a_weekday_in_texas() -> None:
    saturday_night = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    assert business_moment(saturday_night) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    tuesday_early = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert business_moment(tuesday_early) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
