"""The analytics read model (storage/analytics.py) on SQLite and PostgreSQL, counted by hand
on the world of tests/support/analytics_data.py: a campaign's numbers of a window (in
total, by step, by rep, opens and clicks), the digest's facts with and without filters,
the campaigns' stored metrics, and another organization that stays out of all of them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.analytics import (
    AnalyticsWindow,
    CampaignFunnel,
    Counts,
    DayPoint,
    DigestFacts,
    HotReply,
    Metric,
    RankedClient,
    RepCounts,
    RevenueSignal,
    StepCounts,
    TrackingCounts,
    WaitingCard,
)
from domain.clock import FixedClock
from domain.errors import InvalidInput, NotFound
from storage import models as m
from storage.analytics import local_days
from storage.uow import UnitOfWork
from tests.support.analytics_data import DAY, AnalyticsWorld, Org
from tests.support.builders import make_org

SessionFactory = Callable[[], Session]
ZONE = "America/Chicago"


@pytest.fixture
def world(session: Session, session_factory: SessionFactory, clock: FixedClock) -> AnalyticsWorld:
    org, other = make_org(session), make_org(session)
    session.commit()
    return AnalyticsWorld(
        session, session_factory, org_id=org.id, other_org_id=other.id, now=clock.now()
    )


def window(since: datetime, until: datetime) -> AnalyticsWindow:
    return AnalyticsWindow(since=since, until=until)


def counts(**values: Any) -> Counts:
    """Counts with delivered and the reply rate derived as the glossary says."""
    sent = values.get("sent", 0)
    values.setdefault("delivered", sent - values.get("bounced_hard", 0))
    values.setdefault("reply_rate", round(values.get("replied", 0) / sent, 4) if sent else 0.0)
    return Counts(**values)


# Campaign A over its whole life (everything of the world's A happened by T0+10d).
A_LIFETIME = counts(
    enrolled=6,
    sent=8,
    replied=5,
    replies=5,
    positive=3,
    neutral=1,
    negative=1,
    meetings=1,
    bounced_hard=1,
    bounced_soft=1,
    unsubscribed=1,
    complaints=1,
    orders_after_reply=2,
)
# Campaign B: Kim enrolled at T0+1d, s8, her meeting request, opt-out and order.
B_LIFETIME = counts(
    enrolled=1,
    sent=1,
    replied=1,
    replies=1,
    positive=1,
    meetings=1,
    unsubscribed=1,
    orders_after_reply=1,
)


def analytics(uow: UnitOfWork, org: Org, campaign: m.MarketingCampaign, w: AnalyticsWindow) -> Any:
    with uow:
        return uow.analytics.campaign_analytics(org.id, campaign.id, w)


def facts(
    uow: UnitOfWork, world: AnalyticsWorld, w: AnalyticsWindow, **filters: Any
) -> DigestFacts:
    with uow:
        return uow.analytics.digest_facts(world.org.id, w, time_zone=ZONE, now=world.now, **filters)


# --- a campaign's numbers ------------------------------------------------------------------


def test_a_campaigns_lifetime_counts_every_field_in_total_by_step_and_by_rep(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0
    with uow:
        lifetime = uow.analytics.campaign_lifetime_window(org.id, org.campaign_a.id, world.now)
    assert lifetime == window(t0 - 5 * DAY, world.now)

    result = analytics(uow, org, org.campaign_a, lifetime)

    assert (result.campaign_id, result.campaign_name) == (org.campaign_a.id, "Q4 lender win-back")
    assert (result.since, result.until) == (t0 - 5 * DAY, world.now)
    assert result.totals == A_LIFETIME
    assert result.steps == [
        StepCounts(
            step=0,
            **counts(
                sent=5,
                replied=4,
                replies=4,
                positive=2,
                neutral=1,
                negative=1,
                bounced_hard=1,
                orders_after_reply=2,
            ).model_dump(),
        ),
        # Ray's opt-out from the link counts for his last send before it: s6, step 1.
        StepCounts(
            step=1,
            **counts(
                sent=2,
                replied=1,
                replies=1,
                positive=1,
                meetings=1,
                bounced_soft=1,
                unsubscribed=1,
            ).model_dump(),
        ),
        StepCounts(step=None, **counts(sent=1, complaints=1).model_dump()),
    ]
    assert result.reps == [
        RepCounts(
            user_id=org.ana,
            name="Ana Reyes",
            email="ana@lonestar.test",
            **counts(
                enrolled=3,
                sent=5,
                replied=3,
                replies=3,
                positive=2,
                negative=1,
                meetings=1,
                bounced_soft=1,
                unsubscribed=1,
                complaints=1,
                orders_after_reply=2,
            ).model_dump(),
        ),
        RepCounts(
            user_id=org.ben,
            name=None,
            email="ben@lonestar.test",
            **counts(
                enrolled=3,
                sent=3,
                replied=2,
                replies=2,
                positive=1,
                neutral=1,
                bounced_hard=1,
            ).model_dump(),
        ),
    ]
    # s3 and s4 were tracked: a person opened and clicked s4 (a scanner clicked it first),
    # only a proxy fetched s3's pixel.
    assert result.tracking == TrackingCounts(
        tracked_sends=2,
        opened=1,
        clicked=1,
        bot_opens=1,
        bot_clicks=1,
        open_rate=0.5,
        click_rate=0.5,
    )


def test_a_window_counts_its_own_sends_and_its_own_events_apart(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0

    result = analytics(uow, org, org.campaign_a, window(t0 + 3 * DAY, t0 + 7 * DAY))

    # Sends s5, s6, s7; Lee's reply to s4 (sent before the window) counts, Ray's negative
    # reply, Kim's neutral one, Zoe's bounce, Dana's later reply and the orders do not.
    assert result.totals == counts(
        sent=3,
        replied=2,
        replies=2,
        positive=2,
        meetings=1,
        bounced_soft=1,
        unsubscribed=1,
        complaints=1,
    )
    assert result.steps == [
        StepCounts(step=0, **counts(replied=1, replies=1, positive=1).model_dump()),
        StepCounts(
            step=1,
            **counts(
                sent=2,
                replied=1,
                replies=1,
                positive=1,
                meetings=1,
                bounced_soft=1,
                unsubscribed=1,
            ).model_dump(),
        ),
        StepCounts(step=None, **counts(sent=1, complaints=1).model_dump()),
    ]
    assert [(r.user_id, r.sent, r.replied, r.reply_rate) for r in result.reps] == [
        (org.ana, 3, 1, 0.3333),
        (org.ben, 0, 1, 0.0),
    ]
    assert result.tracking is None  # no tracked send in the window


def test_opens_count_for_the_windows_sends_whenever_they_came(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0

    # s3 and s4 went at T0+1h; a person opened s4 at T0+2h, after the window.
    result = analytics(uow, org, org.campaign_a, window(t0, t0 + timedelta(minutes=90)))

    assert result.totals.sent == 5
    assert result.tracking == TrackingCounts(
        tracked_sends=2,
        opened=1,
        clicked=1,
        bot_opens=1,
        bot_clicks=1,
        open_rate=0.5,
        click_rate=0.5,
    )


def test_the_window_ends_just_before_until(uow: UnitOfWork, world: AnalyticsWorld) -> None:
    org, t0 = world.org, world.t0
    opted_out = t0 + 6 * DAY  # Ray, through the link

    before = analytics(uow, org, org.campaign_a, window(t0, opted_out))
    including = analytics(
        uow, org, org.campaign_a, window(t0, opted_out + timedelta(microseconds=1))
    )

    assert (before.totals.unsubscribed, including.totals.unsubscribed) == (0, 1)
    assert (before.totals.complaints, including.totals.complaints) == (0, 1)


def test_an_opt_out_from_the_link_counts_for_the_campaign_of_the_last_send_before_it(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0
    w = window(t0 + 7 * DAY, t0 + 8 * DAY)  # Kim's opt-out; her last send was B's s8

    a = analytics(uow, org, org.campaign_a, w)
    b = analytics(uow, org, org.campaign_b, w)

    assert (a.totals.unsubscribed, b.totals.unsubscribed) == (0, 1)
    assert b.steps == [StepCounts(step=0, **counts(unsubscribed=1).model_dump())]
    assert [(r.user_id, r.unsubscribed) for r in b.reps] == [(org.ben, 1)]


def test_an_order_counts_for_the_send_its_contact_last_replied_to_within_30_days(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0
    w = window(t0 + 10 * DAY, t0 + 13 * DAY)  # Pinnacle's order (T0+10d), Summit's (T0+12d)

    a = analytics(uow, org, org.campaign_a, w)
    b = analytics(uow, org, org.campaign_b, w)

    # Dana last replied on s1 (step 0, not her meeting request on s5), Ray on s2; Kim's
    # last reply was on B's s8, not her earlier one on A's s3.
    assert a.totals == counts(orders_after_reply=2)
    assert a.steps == [StepCounts(step=0, **counts(orders_after_reply=2).model_dump())]
    assert b.totals == counts(orders_after_reply=1)


def test_a_campaigns_life_starts_with_its_first_enrollment_when_that_came_first(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0
    with uow:
        lifetime = uow.analytics.campaign_lifetime_window(org.id, org.campaign_b.id, world.now)

    assert lifetime == window(t0 + DAY, world.now)
    assert analytics(uow, org, org.campaign_b, lifetime).totals == B_LIFETIME


def test_another_organizations_campaign_or_an_unknown_one_is_not_found(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    w = window(world.t0, world.now)
    for campaign_id in (world.other.campaign_a.id, 10**12):
        with uow, pytest.raises(NotFound):
            uow.analytics.campaign_analytics(world.org.id, campaign_id, w)
        with uow, pytest.raises(NotFound):
            uow.analytics.campaign_lifetime_window(world.org.id, campaign_id, world.now)
        with uow, pytest.raises(NotFound):
            uow.analytics.digest_facts(
                world.org.id, w, campaign_id=campaign_id, time_zone=ZONE, now=world.now
            )


def test_the_other_organization_counts_its_own_world_the_same(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    other = world.other
    with uow:
        lifetime = uow.analytics.campaign_lifetime_window(other.id, other.campaign_a.id, world.now)

    assert analytics(uow, other, other.campaign_a, lifetime).totals == A_LIFETIME


# --- the digest -----------------------------------------------------------------------------


def trend(values: dict[str, dict[str, int]], last: str = "2026-11-19") -> list[DayPoint]:
    days = [d for d, _, _ in local_days(ZONE, datetime.fromisoformat(last + "T18:00+00:00"))]
    return [DayPoint(day=d, **values.get(d, {})) for d in days]


def test_the_digest_counts_the_period_and_the_one_before_and_lists_what_to_look_at(
    uow: UnitOfWork, session: Session, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0
    period = window(t0 + 7 * DAY, t0 + 14 * DAY)

    result = facts(uow, world, period)

    assert (result.org_id, result.since, result.until) == (org.id, period.since, period.until)
    assert (result.campaign_id, result.rep_user_id) == (None, None)
    assert result.sent == Metric(current=1, previous=9)
    # Replies to no send of ours (Ned, Ivy, Ann) are no outreach's numbers.
    assert result.replies.positive == Metric(current=2, previous=2)
    assert result.replies.neutral == Metric(current=0, previous=1)
    assert result.replies.negative == Metric(current=0, previous=1)
    assert result.meetings == Metric(current=1, previous=1)
    assert result.opt_outs == Metric(current=1, previous=1)
    assert result.bounces == Metric(current=0, previous=1)
    assert result.orders_after_reply == Metric(current=3, previous=0)
    assert not result.empty

    # Kim's meeting request is not hot: Summit ordered 19 days before it. Pinnacle had
    # not for 208 days when Dana replied (it ordered since). Ivy and Ann tie; Ann is later.
    dana, ned, ann = (org.contacts[n] for n in ("dana", "ned", "ann"))
    reply_card = org.cards["reply"]
    assert result.hottest == [
        HotReply(
            contact_id=dana.id,
            contact_name="Dana Cole",
            contact_email=dana.email,
            client_name="Pinnacle Lending",
            days_since_order=208,
            replied_at=t0 + 8 * DAY,
            inbound_email_id=org.inbound["dana_positive"].id,
            engagement_score=round(dana.engagement_score, 2),
            card_id=reply_card.id,
            slack_channel_id="CREPLY",
            slack_message_ts="1700000000.reply",
        ),
        HotReply(
            contact_id=ned.id,
            contact_name="Ned Ward",
            contact_email=ned.email,
            client_name="Harbor Credit Union",
            days_since_order=None,
            replied_at=t0 + 9 * DAY,
            inbound_email_id=org.inbound["ned_meeting"].id,
            engagement_score=35.0,
        ),
        HotReply(
            contact_id=ann.id,
            contact_name=ann.email,
            contact_email=ann.email,
            client_name="Harbor Credit Union",
            days_since_order=None,
            replied_at=t0 + 10 * DAY,
            inbound_email_id=org.inbound["ann_positive"].id,
            engagement_score=25.0,
        ),
    ]
    assert dana.engagement_score > 35

    # c4 is snoozed past now, c5 and the reply card are decided; c9's snooze has ended.
    assert result.waiting_count == 6
    cards = org.cards

    def waiting(key: str, rep: tuple[str | None, str | None]) -> WaitingCard:
        card = cards[key]
        return WaitingCard(
            card_id=card.id,
            title=f"Card {key}",
            created_at=card.created_at,
            rep_name=rep[0],
            rep_slack_user_id=rep[1],
            slack_channel_id=f"C{key.upper()}",
            slack_message_ts=f"1700000000.{key}",
        )

    ana, ben = ("Ana Reyes", "UANA"), ("ben@lonestar.test", None)
    assert result.waiting == [
        waiting("c1", ana),
        waiting("c2", ben),
        waiting("c3", ben),
        waiting("c6", (None, None)),
        waiting("c8", ana),
    ]

    # The running campaigns: A and B (the paused one and the one without a job are not).
    assert result.funnels == [
        CampaignFunnel(
            campaign_id=org.campaign_a.id,
            campaign_name="Q4 lender win-back",
            lifetime=A_LIFETIME,
            period=counts(replied=1, replies=1, positive=1, orders_after_reply=2),
        ),
        CampaignFunnel(
            campaign_id=org.campaign_b.id,
            campaign_name="Spring promo",
            lifetime=B_LIFETIME,
            period=counts(
                replied=1,
                replies=1,
                positive=1,
                meetings=1,
                unsubscribed=1,
                orders_after_reply=1,
            ),
        ),
    ]
    # Pinnacle's one order followed two replies (Dana's and Ray's): counted once; its
    # contact is the one recorded last for it.
    assert result.revenue == [
        RevenueSignal(
            client_id=org.pinnacle.id,
            client_name="Pinnacle Lending",
            orders=1,
            fees=450.0,
            contact_name="Ray Park",
        ),
        RevenueSignal(
            client_id=org.summit.id,
            client_name="Summit Mortgage",
            orders=1,
            fees=None,
            contact_name="Kim Lowe",
        ),
    ]
    # Chicago days: s8 went at 03:00 UTC on the 12th, the 11th in Chicago.
    assert result.trend == trend(
        {
            "2026-11-05": {"sent": 5},
            "2026-11-06": {"negative": 1},
            "2026-11-07": {"neutral": 1},
            "2026-11-08": {"positive": 1},
            "2026-11-09": {"sent": 2},
            "2026-11-10": {"sent": 1, "positive": 1},
            "2026-11-11": {"sent": 1},
            "2026-11-12": {"sent": 1},
            "2026-11-13": {"positive": 1},
            "2026-11-14": {"positive": 1},
        }
    )
    assert result.stale_clients == [
        RankedClient(
            client_id=org.pinnacle.id,
            client_name="Pinnacle Lending",
            rank=1,
            score=0.99,
            days_since_order=201,
            past_order_rate=0.5,
            contact_id=dana.id,
            contact_name="Dana Cole",
            contact_email=dana.email,
        ),
        RankedClient(
            client_id=org.harbor.id,
            client_name="Harbor Credit Union",
            rank=2,
            score=0.98,
            days_since_order=None,
            past_order_rate=0.5,
            contact_id=None,
            contact_name=None,
            contact_email=None,
        ),
    ] + [
        RankedClient(
            client_id=client_id,
            client_name=f"Lender {rank:02d}",
            rank=rank,
            score=round(1 - rank / 100, 2),
            days_since_order=200 + rank,
            past_order_rate=0.5,
            contact_id=None,
            contact_name=None,
            contact_email=None,
        )
        for rank, client_id in enumerate(lender_ids(session, org), 3)
    ]
    # s9 was tracked; nobody opened it (s8's open belongs to a send of the week before).
    assert result.tracking == TrackingCounts(tracked_sends=1)


def lender_ids(session: Session, org: Org) -> list[int]:
    r, c = m.ClientRanking, m.Client
    return list(
        session.scalars(
            select(r.client_id)
            .join(c, c.id == r.client_id)
            .where(r.org_id == org.id, c.name.like("Lender %"), r.rank <= 10)
            .order_by(r.rank)
        )
    )


def test_a_digest_funnel_equals_the_campaigns_analytics_of_the_same_windows(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0
    period = window(t0 + 3 * DAY, t0 + 9 * DAY)

    result = facts(uow, world, period)

    for funnel in result.funnels:
        campaign = org.campaign_a if funnel.campaign_id == org.campaign_a.id else org.campaign_b
        with uow:
            life = uow.analytics.campaign_lifetime_window(org.id, campaign.id, world.now)
        assert funnel.period == analytics(uow, org, campaign, period).totals
        assert (
            funnel.lifetime
            == analytics(uow, org, campaign, window(life.since, period.until)).totals
        )
    assert [f.campaign_id for f in result.funnels] == [org.campaign_a.id, org.campaign_b.id]


def test_a_digest_of_one_campaign_counts_its_sends_cards_and_orders_only(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0

    result = facts(uow, world, window(t0 + 7 * DAY, t0 + 14 * DAY), campaign_id=org.campaign_a.id)

    assert result.campaign_id == org.campaign_a.id
    assert result.sent == Metric(current=0, previous=8)
    assert result.replies.positive == Metric(current=1, previous=2)
    assert result.replies.neutral == Metric(current=0, previous=1)
    assert result.replies.negative == Metric(current=0, previous=1)
    assert result.meetings == Metric(current=0, previous=1)
    assert result.opt_outs == Metric(current=0, previous=1)
    assert result.bounces == Metric(current=0, previous=1)
    assert result.orders_after_reply == Metric(current=2, previous=0)
    assert [h.contact_id for h in result.hottest] == [org.contacts["dana"].id]
    assert result.waiting_count == 4
    assert [w.card_id for w in result.waiting] == [
        org.cards[k].id for k in ("c1", "c2", "c8", "c9")
    ]
    assert [(f.campaign_id, f.lifetime) for f in result.funnels] == [
        (org.campaign_a.id, A_LIFETIME)
    ]
    assert [(r.client_id, r.orders, r.fees) for r in result.revenue] == [
        (org.pinnacle.id, 1, 450.0)
    ]
    assert result.trend == trend(
        {
            "2026-11-05": {"sent": 5},
            "2026-11-06": {"negative": 1},
            "2026-11-07": {"neutral": 1},
            "2026-11-08": {"positive": 1},
            "2026-11-09": {"sent": 2},
            "2026-11-10": {"sent": 1, "positive": 1},
            "2026-11-13": {"positive": 1},
        }
    )
    assert len(result.stale_clients) == 10  # the ranking is the organization's
    assert result.tracking is None


def test_a_digest_of_one_rep_counts_their_sends_and_the_cards_of_their_jobs(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0

    result = facts(uow, world, window(t0 + 7 * DAY, t0 + 14 * DAY), rep_user_id=org.ben)

    assert result.rep_user_id == org.ben
    assert result.sent == Metric(current=0, previous=4)
    assert result.replies.positive == Metric(current=1, previous=1)
    assert result.replies.neutral == Metric(current=0, previous=1)
    assert result.replies.negative == Metric(current=0, previous=0)
    assert result.meetings == Metric(current=1, previous=0)
    assert result.opt_outs == Metric(current=1, previous=0)
    assert result.bounces == Metric(current=0, previous=1)
    assert result.orders_after_reply == Metric(current=1, previous=0)
    assert result.hottest == []  # Kim's client is not stale
    assert result.waiting_count == 2
    assert [w.card_id for w in result.waiting] == [org.cards["c2"].id, org.cards["c3"].id]
    assert result.funnels == [
        CampaignFunnel(
            campaign_id=org.campaign_a.id,
            campaign_name="Q4 lender win-back",
            lifetime=counts(
                enrolled=3,
                sent=3,
                replied=2,
                replies=2,
                positive=1,
                neutral=1,
                bounced_hard=1,
            ),
            period=Counts(),
        ),
        CampaignFunnel(
            campaign_id=org.campaign_b.id,
            campaign_name="Spring promo",
            lifetime=B_LIFETIME,
            period=counts(
                replied=1,
                replies=1,
                positive=1,
                meetings=1,
                unsubscribed=1,
                orders_after_reply=1,
            ),
        ),
    ]
    assert [(r.client_id, r.contact_name) for r in result.revenue] == [(org.summit.id, "Kim Lowe")]
    assert result.trend == trend(
        {
            "2026-11-05": {"sent": 3},
            "2026-11-07": {"neutral": 1},
            "2026-11-08": {"positive": 1},
            "2026-11-11": {"sent": 1},
            "2026-11-14": {"positive": 1},
        }
    )


def test_a_digest_of_a_campaign_that_is_not_running_has_no_funnel(
    uow: UnitOfWork, world: AnalyticsWorld
) -> None:
    org, t0 = world.org, world.t0

    result = facts(uow, world, window(t0 + 7 * DAY, t0 + 14 * DAY), campaign_id=org.paused.id)

    assert result.funnels == []
    assert result.empty
    assert result.sent == Metric(current=0, previous=0)
    assert result.waiting_count == 0
    assert [p.sent for p in result.trend] == [0] * 30


def test_an_empty_period_says_so(uow: UnitOfWork, world: AnalyticsWorld) -> None:
    result = facts(uow, world, window(world.now - DAY, world.now))

    assert result.empty
    assert result.sent == Metric(current=0, previous=0)
    assert result.hottest == []
    assert result.revenue == []
    assert result.waiting_count == 6  # what waits for a decision waits whatever the period


def test_the_trend_cuts_local_days_at_local_midnight_across_a_dst_change() -> None:
    days = local_days(ZONE, datetime(2026, 11, 3, 6, 0, tzinfo=UTC))  # 00:00 CST on the 3rd

    assert len(days) == 30
    assert days[-1][0] == "2026-11-02"  # the last instant before until
    by_day = {d: (start, end) for d, start, end in days}
    assert by_day["2026-11-01"] == (
        datetime(2026, 11, 1, 5, 0, tzinfo=UTC),  # 00:00 CDT
        datetime(2026, 11, 2, 6, 0, tzinfo=UTC),  # 00:00 CST: a 25-hour day
    )
    with pytest.raises(InvalidInput):
        local_days("Mars/Olympus_Mons", datetime(2026, 11, 3, tzinfo=UTC))


# --- the stored metrics ----------------------------------------------------------------------


def test_refreshing_writes_each_campaigns_lifetime_totals_into_its_metrics(
    uow: UnitOfWork, session: Session, world: AnalyticsWorld
) -> None:
    org = world.org
    with uow:
        assert uow.analytics.campaign_org_ids() == sorted([org.id, world.other.id])
        written = uow.analytics.refresh_campaign_metrics(org.id, world.now)
        uow.commit()

    assert written == 4
    session.expire_all()
    metrics = {
        row.id: row.metrics
        for row in session.scalars(
            select(m.MarketingCampaign).where(
                m.MarketingCampaign.org_id.in_([org.id, world.other.id])
            )
        )
    }
    stamp = {"updated_at": world.now.isoformat()}
    assert metrics[org.campaign_a.id] == {**A_LIFETIME.model_dump(), **stamp}
    assert metrics[org.campaign_b.id] == {**B_LIFETIME.model_dump(), **stamp}
    assert metrics[org.paused.id] == {**Counts().model_dump(), **stamp}
    assert metrics[org.jobless.id] == {**Counts().model_dump(), **stamp}
    assert metrics[world.other.campaign_a.id] == {}
