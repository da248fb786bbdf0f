"""Engagement scoring (domain/engagement.py): the formula, the trend, and record_engagement on
the in-memory repository (idempotence, the re-engaged flag, events that arrive late)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.contacts import EngagementTrend
from domain.engagement import (
    HALF_LIFE,
    WEIGHTS,
    EngagementChange,
    EngagementEvent,
    EngagementInput,
    ScorePoint,
    decayed,
    next_score,
    record_engagement,
    record_engagements,
    reply_event,
    trend_between,
    trend_of,
)
from tests.unit.fakes import ClientRecord, EngagementStore, FakeEngagement

E = EngagementEvent
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ORG, DANA, RAY, PINNACLE = 1, 10, 11, 100


class Holder:
    def __init__(self) -> None:
        self.engagement = EngagementStore()
        self.engagement.add_contact(ORG, DANA, client_id=PINNACLE)
        self.engagement.add_contact(ORG, RAY, client_id=PINNACLE)
        self.repo = FakeEngagement(self)

    @property
    def store(self) -> EngagementStore:
        return self.engagement

    def record(
        self, event: EngagementEvent, at: datetime, *, contact_id: int = DANA, **kw: Any
    ) -> EngagementChange | None:
        return record_engagement(
            self.repo, org_id=ORG, contact_id=contact_id, event=event, occurred_at=at, **kw
        )

    def scores(self, contact_id: int = DANA) -> list[tuple[str, float | None]]:
        return [(r.event, r.score_after) for r in self.engagement.history(ORG, contact_id)]


@pytest.fixture
def h() -> Holder:
    return Holder()


# --- the formula ----------------------------------------------------------------------


def test_a_score_halves_every_thirty_days_without_news() -> None:
    assert decayed(80.0, since=T0, at=T0 + HALF_LIFE) == pytest.approx(40.0)
    assert decayed(80.0, since=T0, at=T0 + 2 * HALF_LIFE) == pytest.approx(20.0)
    assert decayed(80.0, since=T0, at=T0 + timedelta(days=15)) == pytest.approx(80 / 2**0.5)


def test_time_before_the_score_was_reached_adds_nothing() -> None:
    assert decayed(50.0, since=T0, at=T0 - timedelta(days=3)) == 50.0


def test_the_score_stays_between_0_and_100() -> None:
    assert next_score(ScorePoint(95.0, T0), delta=40.0, at=T0) == 100.0
    assert next_score(ScorePoint(10.0, T0), delta=-100.0, at=T0) == 0.0
    assert next_score(None, delta=25.0, at=T0) == 25.0


@given(
    score=st.floats(min_value=0, max_value=100),
    days=st.floats(min_value=0, max_value=3650),
    event=st.sampled_from(list(EngagementEvent)),
)
def test_any_event_after_any_pause_leaves_a_score_within_0_and_100(
    score: float, days: float, event: EngagementEvent
) -> None:
    after = next_score(ScorePoint(score, T0), delta=WEIGHTS[event], at=T0 + timedelta(days=days))
    assert 0.0 <= after <= 100.0


def test_the_trend_needs_five_points_either_way() -> None:
    assert trend_between(10.0, 15.0) == EngagementTrend.RISING
    assert trend_between(10.0, 14.9) == EngagementTrend.STEADY
    assert trend_between(15.0, 10.1) == EngagementTrend.STEADY
    assert trend_between(15.0, 10.0) == EngagementTrend.FALLING


def test_a_score_left_alone_for_thirty_days_falls_once_it_was_ten_or_more() -> None:
    later = T0 + timedelta(days=30)
    assert trend_of([ScorePoint(10.0, T0)], later) == EngagementTrend.FALLING
    assert trend_of([ScorePoint(8.0, T0)], later) == EngagementTrend.STEADY
    assert trend_of([], later) == EngagementTrend.UNKNOWN


def test_a_classified_reply_becomes_one_event() -> None:
    assert reply_event("positive", "meeting_request") == E.MEETING_REQUEST
    assert reply_event("neutral", "out_of_office") == E.OUT_OF_OFFICE
    assert reply_event("positive", "info_request") == E.POSITIVE_REPLY
    assert reply_event("negative", "not_now") == E.NEGATIVE_REPLY
    assert reply_event(None, "interested") == E.POSITIVE_REPLY
    assert reply_event(None, "not_interested") == E.NEGATIVE_REPLY
    assert reply_event("neutral", "interested") == E.REPLIED
    assert reply_event(None, None) == E.REPLIED


# --- record_engagement ----------------------------------------------------------------


def test_a_positive_reply_raises_the_score_and_stamps_the_reply_dates(h: Holder) -> None:
    h.record(E.SENT, T0, email_send_id=1)
    change = h.record(E.POSITIVE_REPLY, T0 + timedelta(days=2), inbound_email_id=5)

    assert change is not None
    contact = h.store.contacts[(ORG, DANA)]
    assert (contact.score, contact.trend) == (25.0, EngagementTrend.RISING)
    assert contact.last_replied_at == T0 + timedelta(days=2)
    assert contact.last_positive_interaction_at == T0 + timedelta(days=2)
    (sent, reply) = h.store.history(ORG, DANA)
    assert (sent.event, sent.score_delta, sent.score_after, sent.email_send_id) == (
        "sent",
        0.0,
        0.0,
        1,
    )
    assert (reply.event, reply.sentiment, reply.score_delta, reply.score_after) == (
        "positive_reply",
        "positive",
        25.0,
        25.0,
    )


def test_the_score_decays_between_events(h: Holder) -> None:
    h.record(E.MEETING_REQUEST, T0, inbound_email_id=1)
    h.record(E.REPLIED, T0 + timedelta(days=30), inbound_email_id=2)

    assert h.scores() == [("meeting_request", 35.0), ("replied", pytest.approx(27.5))]
    assert h.store.contacts[(ORG, DANA)].score == pytest.approx(27.5)


def test_a_negative_reply_sets_the_reply_date_but_not_the_positive_one(h: Holder) -> None:
    h.record(E.POSITIVE_REPLY, T0, inbound_email_id=1)
    h.record(E.NEGATIVE_REPLY, T0 + timedelta(days=1), inbound_email_id=2)

    contact = h.store.contacts[(ORG, DANA)]
    assert contact.last_replied_at == T0 + timedelta(days=1)
    assert contact.last_positive_interaction_at == T0
    assert contact.score == pytest.approx(decayed(25.0, since=T0, at=T0 + timedelta(days=1)) - 20)


def test_the_same_reply_recorded_twice_is_recorded_once(h: Holder) -> None:
    first = h.record(E.POSITIVE_REPLY, T0, inbound_email_id=5, sentiment="positive")
    second = h.record(E.POSITIVE_REPLY, T0, inbound_email_id=5, sentiment="positive")

    assert first is not None
    assert second is None
    assert h.scores() == [("positive_reply", 25.0)]
    assert h.store.contacts[(ORG, DANA)].score == 25.0


def test_one_inbound_email_may_carry_two_different_events(h: Holder) -> None:
    assert h.record(E.SOFT_BOUNCE, T0, inbound_email_id=5) is not None
    assert h.record(E.BOUNCED, T0, inbound_email_id=5) is not None
    assert h.record(E.BOUNCED, T0, inbound_email_id=5) is None

    assert [e for e, _ in h.scores()] == ["soft_bounce", "bounced"]


def test_a_send_is_keyed_by_its_id_and_a_reply_to_it_by_the_reply(h: Holder) -> None:
    assert h.record(E.SENT, T0, email_send_id=3) is not None
    assert h.record(E.SENT, T0, email_send_id=3) is None
    assert h.record(E.REPLIED, T0, email_send_id=3, inbound_email_id=8) is not None
    assert h.record(E.REPLIED, T0, email_send_id=3, inbound_email_id=9) is not None

    assert len(h.store.rows) == 3


def test_an_order_after_a_reply_is_recorded_once_per_order(h: Holder) -> None:
    assert h.record(E.ORDER_AFTER_REPLY, T0, detail={"order_id": 40}) is not None
    assert h.record(E.ORDER_AFTER_REPLY, T0, detail={"order_id": 40}) is None
    assert h.record(E.ORDER_AFTER_REPLY, T0, detail={"order_id": 41}) is not None
    with pytest.raises(ValueError, match="order_id"):
        h.record(E.ORDER_AFTER_REPLY, T0)

    assert h.store.contacts[(ORG, DANA)].last_positive_interaction_at == T0


def test_an_unkeyed_event_is_recorded_each_time(h: Holder) -> None:
    h.record(E.OPTED_OUT, T0, detail={"source": "one_click"})
    h.record(E.OPTED_OUT, T0, detail={"source": "one_click"})

    assert [e for e, _ in h.scores()] == ["opted_out", "opted_out"]


def test_an_unknown_contact_records_nothing(h: Holder) -> None:
    assert h.record(E.REPLIED, T0, contact_id=999, inbound_email_id=1) is None
    assert h.store.rows == []


def test_a_sentiment_outside_the_three_is_refused(h: Holder) -> None:
    with pytest.raises(ValueError, match="ecstatic"):
        h.record(E.REPLIED, T0, inbound_email_id=1, sentiment="ecstatic")
    assert h.store.rows == []


def test_the_contact_row_is_locked_before_the_check(h: Holder) -> None:
    h.record(E.REPLIED, T0, inbound_email_id=1)
    h.record(E.REPLIED, T0, inbound_email_id=1)

    assert h.store.locked == [(ORG, DANA), (ORG, DANA)]


def test_soft_bounces_are_counted_over_a_period(h: Holder) -> None:
    for n, days in enumerate([0, 10, 25, 40], start=1):
        h.record(E.SOFT_BOUNCE, T0 + timedelta(days=days), inbound_email_id=n)

    since = T0 + timedelta(days=40) - timedelta(days=30)
    assert h.repo.count_events(ORG, DANA, E.SOFT_BOUNCE, since) == 3
    assert h.repo.count_events(ORG, DANA, E.BOUNCED, since) == 0
    assert h.repo.count_events(ORG, RAY, E.SOFT_BOUNCE, since) == 0


# --- re-engaged clients ---------------------------------------------------------------


def client(h: Holder, last_ordered_at: datetime | None) -> ClientRecord:
    record = ClientRecord(last_ordered_at=last_ordered_at)
    h.store.clients[(ORG, PINNACLE)] = record
    return record


def test_a_positive_reply_from_a_stale_clients_contact_re_engages_the_client(h: Holder) -> None:
    pinnacle = client(h, T0 - timedelta(days=120))

    change = h.record(E.POSITIVE_REPLY, T0, inbound_email_id=1)

    assert change is not None
    assert change.re_engaged_client_id == PINNACLE
    assert pinnacle.re_engaged_at == T0


def test_a_client_that_never_ordered_is_stale_and_a_meeting_request_re_engages_it(
    h: Holder,
) -> None:
    pinnacle = client(h, None)

    h.record(E.MEETING_REQUEST, T0, inbound_email_id=1)

    assert pinnacle.re_engaged_at == T0


def test_a_client_is_re_engaged_once_however_many_contacts_answer(h: Holder) -> None:
    pinnacle = client(h, T0 - timedelta(days=200))

    h.record(E.POSITIVE_REPLY, T0, inbound_email_id=1)
    later = h.record(E.MEETING_REQUEST, T0 + timedelta(days=1), contact_id=RAY, inbound_email_id=2)

    assert later is not None
    assert later.re_engaged_client_id is None
    assert pinnacle.re_engaged_at == T0


def test_a_client_that_ordered_recently_is_not_re_engaged(h: Holder) -> None:
    pinnacle = client(h, T0 - timedelta(days=89))

    h.record(E.POSITIVE_REPLY, T0, inbound_email_id=1)

    assert pinnacle.re_engaged_at is None


def test_a_neutral_or_negative_reply_does_not_re_engage(h: Holder) -> None:
    pinnacle = client(h, T0 - timedelta(days=365))

    h.record(E.REPLIED, T0, inbound_email_id=1)
    h.record(E.NEGATIVE_REPLY, T0, inbound_email_id=2)
    h.record(E.ORDER_AFTER_REPLY, T0, detail={"order_id": 1})

    assert pinnacle.re_engaged_at is None


def test_a_client_that_ordered_again_and_went_stale_again_is_re_engaged_again(
    h: Holder,
) -> None:
    pinnacle = client(h, T0 - timedelta(days=365))
    h.record(E.POSITIVE_REPLY, T0, inbound_email_id=1)
    pinnacle.last_ordered_at = T0 + timedelta(days=5)
    a_year_on = T0 + timedelta(days=365)

    h.record(E.POSITIVE_REPLY, a_year_on, inbound_email_id=2)

    assert pinnacle.re_engaged_at == a_year_on


# --- events that arrive late ----------------------------------------------------------


def test_a_late_event_is_scored_where_it_belongs_and_the_later_rows_follow(h: Holder) -> None:
    h.record(E.SENT, T0, email_send_id=1)
    h.record(E.POSITIVE_REPLY, T0 + timedelta(days=60), inbound_email_id=2)
    late = h.record(E.MEETING_REQUEST, T0 + timedelta(days=30), inbound_email_id=1)

    in_order = Holder()
    in_order.record(E.SENT, T0, email_send_id=1)
    in_order.record(E.MEETING_REQUEST, T0 + timedelta(days=30), inbound_email_id=1)
    in_order.record(E.POSITIVE_REPLY, T0 + timedelta(days=60), inbound_email_id=2)

    assert late is not None
    assert late.rescored == 1
    assert h.scores() == in_order.scores()
    assert h.scores()[-1] == ("positive_reply", pytest.approx(35 / 2 + 25))
    assert h.store.contacts[(ORG, DANA)] == in_order.store.contacts[(ORG, DANA)]


def test_a_late_reply_never_moves_the_reply_dates_back(h: Holder) -> None:
    h.record(E.POSITIVE_REPLY, T0 + timedelta(days=10), inbound_email_id=2)
    h.record(E.REPLIED, T0, inbound_email_id=1)

    contact = h.store.contacts[(ORG, DANA)]
    assert contact.last_replied_at == T0 + timedelta(days=10)
    assert contact.last_positive_interaction_at == T0 + timedelta(days=10)


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(list(EngagementEvent)),
        st.integers(min_value=0, max_value=120),  # day
        st.integers(min_value=0, max_value=23),  # hour
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(events=_EVENTS, order=st.randoms(use_true_random=False))
def test_whatever_order_events_arrive_in_the_scores_are_those_of_time_order(
    events: list[tuple[EngagementEvent, int, int]], order: random.Random
) -> None:
    keyed = [
        (event, T0 + timedelta(days=day, hours=hour), n)
        for n, (event, day, hour) in enumerate(events, start=1)
    ]
    shuffled = list(keyed)
    order.shuffle(shuffled)
    # Time order, ties in the order they arrived (ids break ties in the history).
    in_time = sorted(shuffled, key=lambda e: e[1])
    arrived, sorted_run = Holder(), Holder()
    for holder, run in ((arrived, shuffled), (sorted_run, in_time)):
        for event, at, n in run:
            holder.record(event, at, inbound_email_id=n)

    got = [(r.event, r.occurred_at, r.score_after) for r in arrived.store.history(ORG, DANA)]
    want = [(r.event, r.occurred_at, r.score_after) for r in sorted_run.store.history(ORG, DANA)]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert [g[2] for g in got] == pytest.approx([w[2] for w in want])
    a, b = arrived.store.contacts[(ORG, DANA)], sorted_run.store.contacts[(ORG, DANA)]
    assert a.score == pytest.approx(b.score)
    assert (a.trend, a.last_replied_at, a.last_positive_interaction_at) == (
        b.trend,
        b.last_replied_at,
        b.last_positive_interaction_at,
    )


# --- many events at once ----------------------------------------------------------------


def test_many_events_at_once_score_as_the_same_events_one_by_one(h: Holder) -> None:
    events = [
        EngagementInput(DANA, E.POSITIVE_REPLY, T0 + timedelta(days=40), inbound_email_id=2),
        EngagementInput(RAY, E.REPLIED, T0, inbound_email_id=3),
        EngagementInput(DANA, E.MEETING_REQUEST, T0, inbound_email_id=1),  # earlier: late
        EngagementInput(DANA, E.ORDER_AFTER_REPLY, T0 + timedelta(days=41), detail={"order_id": 9}),
    ]
    one_by_one = Holder()
    for item in events:
        one_by_one.record(
            item.event,
            item.occurred_at,
            contact_id=item.contact_id,
            inbound_email_id=item.inbound_email_id,
            detail=item.detail,
        )

    changes = record_engagements(h.repo, org_id=ORG, events=events)

    assert [c is not None for c in changes] == [True, True, True, True]
    assert h.scores() == one_by_one.scores()
    assert h.scores(RAY) == one_by_one.scores(RAY)
    assert h.store.contacts == one_by_one.store.contacts
    # The contacts are locked once each, in id order, before anything is checked.
    assert h.store.locked == [(ORG, DANA), (ORG, RAY)]


def test_the_same_event_twice_in_one_call_is_recorded_once(h: Holder) -> None:
    twice = [EngagementInput(DANA, E.ORDER_AFTER_REPLY, T0, detail={"order_id": 4})] * 2

    changes = record_engagements(h.repo, org_id=ORG, events=twice)

    assert [c is not None for c in changes] == [True, False]
    assert h.scores() == [("order_after_reply", 40.0)]
