"""The stale-client ranking, as a pure function of the clients' facts."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from domain.targeting import (
    DAYS_A_MONTH,
    BestContact,
    StaleClientFacts,
    StaleTargetingSettings,
    rank_stale_clients,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
DEFAULTS = StaleTargetingSettings()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def contact(contact_id: int, lead: int | None, **overrides: object) -> BestContact:
    values: dict[str, object] = {
        "contact_id": contact_id,
        "lead_score": lead,
        "engagement_score": 0.0,
        "engagement_at": None,
        "engagement_peak": None,
        "last_positive_interaction_at": None,
    }
    values.update(overrides)
    return BestContact(**values)  # type: ignore[arg-type]


def client(
    client_id: int,
    orders: int,
    first: float | None,
    last: float | None,
    best: BestContact | None,
    reachable: int = 1,
) -> StaleClientFacts:
    return StaleClientFacts(
        client_id=client_id,
        orders=orders,
        first_ordered_at=None if first is None else ago(first),
        last_ordered_at=None if last is None else ago(last),
        reachable_contacts=reachable if best else 0,
        best=best,
    )


WORLD = [
    # C: 3 orders between 250 and 200 days ago; a warm contact cooling from 80.
    client(
        3,
        3,
        250,
        200,
        contact(31, 50, engagement_score=60.0, engagement_at=ago(10), engagement_peak=80.0),
    ),
    # A: the busiest past (24 orders over 390 days); its contact fell from 40 to 2.5.
    client(
        1,
        24,
        400,
        100,
        contact(
            11,
            80,
            engagement_score=10.0,
            engagement_at=ago(60),
            engagement_peak=40.0,
            last_positive_interaction_at=ago(75),
        ),
        reachable=3,
    ),
    # B: 6 orders over 270 days; a contact with a high lead score and no engagement.
    client(2, 6, 300, 120, contact(21, 95)),
    # Never ordered: nothing to win back.
    client(4, 0, None, None, contact(41, 99)),
    # Ordered a month ago: not stale.
    client(5, 40, 400, 30, contact(51, 99)),
    # Stale, but nobody reachable.
    client(6, 50, 500, 100, None),
]


def test_stale_clients_rank_by_order_rate_engagement_decay_and_lead_score() -> None:
    ranking = rank_stale_clients(WORLD, DEFAULTS, NOW)
    assert [(r.rank, r.client_id, r.best_contact_id) for r in ranking.ranked] == [
        (1, 1, 11),
        (2, 2, 21),
        (3, 3, 31),
    ]
    assert ranking.considered == 4  # A, B, C and the client without a reachable contact
    assert ranking.without_contact == 1
    first, second, third = ranking.ranked
    # A has the top rate (part 1), fell 37.5 points (part 0.375), lead score 80.
    assert first.score == pytest.approx(50 + 7.5 + 24, abs=0.01)
    rate_b = 6 / ((180 + 90) / DAYS_A_MONTH)
    rate_a = 24 / ((300 + 90) / DAYS_A_MONTH)
    assert second.score == pytest.approx(
        50 * math.log1p(rate_b) / math.log1p(rate_a) + 30 * 0.95, abs=0.01
    )
    assert second.engagement_decay == 0.0
    assert third.engagement_decay == pytest.approx(80 - 60 * 0.5 ** (10 / 30), abs=0.01)


def test_a_clients_reasons_say_why_it_ranks_there() -> None:
    first = rank_stale_clients(WORLD, DEFAULTS, NOW).ranked[0]
    assert first.days_since_order == 100
    assert first.past_order_rate == pytest.approx(24 / (390 / DAYS_A_MONTH), abs=1e-4)
    assert first.reasons == {
        "summary": "1.9 orders a month over 13 months; no order for 100 days; engagement fell "
        "38 points from its peak; last positive interaction 75 days ago; best contact's lead "
        "score 80",
        "days_since_order": 100,
        "reachable_contacts": 3,
        "past_order_rate": {
            "orders": 24,
            "months_active": 12.8,
            "per_month": 1.873,
            "points": 50.0,
        },
        "engagement_decay": {
            "peak": 40.0,
            "now": 2.5,
            "fell": 37.5,
            "days_since_positive": 75,
            "points": 7.5,
        },
        "lead_score": {"contact_id": 11, "score": 80, "points": 24.0},
    }


def test_the_ranking_keeps_the_top_size_and_its_own_stale_threshold() -> None:
    top_two = rank_stale_clients(WORLD, StaleTargetingSettings(top_size=2), NOW)
    assert [r.client_id for r in top_two.ranked] == [1, 2]
    # Stale after 150 days: A (100 days) and B (120) are not stale yet.
    later = rank_stale_clients(WORLD, StaleTargetingSettings(stale_after_days=150), NOW)
    assert [r.client_id for r in later.ranked] == [3]


def test_equal_clients_rank_by_id_whatever_order_they_come_in() -> None:
    same = [client(n, 5, 300, 150, contact(n * 10, 60)) for n in (9, 4, 7)]
    ranked = rank_stale_clients(same, DEFAULTS, NOW).ranked
    assert [r.client_id for r in ranked] == [4, 7, 9]
    assert [r.rank for r in ranked] == [1, 2, 3]


def test_a_contact_without_a_lead_score_counts_as_zero() -> None:
    [only] = rank_stale_clients([client(1, 5, 300, 150, contact(10, None))], DEFAULTS, NOW).ranked
    assert only.score == 50.0  # its rate is the top rate; nothing else
    assert only.reasons["summary"].endswith("best contact's lead score not computed yet")


def test_targeting_settings_refuse_what_cannot_rank() -> None:
    with pytest.raises(ValidationError, match="at least one of the ranking weights"):
        StaleTargetingSettings(order_rate_weight=0, engagement_decay_weight=0, lead_score_weight=0)
    with pytest.raises(ValidationError):
        StaleTargetingSettings(stale_after_days=0)
    with pytest.raises(ValidationError):
        StaleTargetingSettings(top_size=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        StaleTargetingSettings.model_validate({"top": 5})
