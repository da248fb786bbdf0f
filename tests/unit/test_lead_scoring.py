"""Lead scoring: the formula, the organization's settings, when contacts are scored again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.analytics_settings import AnalyticsSettings
from domain.engagement import EngagementEvent, EngagementInput, record_engagements
from domain.lead_scoring import (
    LeadContext,
    LeadFacts,
    LeadScoringSettings,
    lead_score,
    rescore_contacts,
    score_all,
)
from domain.targeting import StaleTargetingSettings
from tests.unit.fakes import EngagementStore, FakeEngagement

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
DEFAULTS = LeadScoringSettings()


def facts(**overrides: object) -> LeadFacts:
    values: dict[str, object] = {
        "contact_id": 1,
        "role_code": "LO",
        "role_category": "loan_origination",
        "client_orders": 9,
        "busiest_client_orders": 99,
        "engagement_score": 60.0,
        "engagement_at": NOW - timedelta(days=30),
        "client_last_ordered_at": NOW - timedelta(days=180),
        "last_replied_at": NOW - timedelta(days=90),
    }
    values.update(overrides)
    return LeadFacts(**values)  # type: ignore[arg-type]


def test_the_score_is_the_weighted_mean_of_its_parts_as_the_docstring_says() -> None:
    # role LO 1.0; volume ln(10)/ln(100) = 0.5; engagement 60 halved after 30 days = 0.3;
    # the client's last order one order half-life ago = 0.5; the reply one half-life = 0.5.
    score = lead_score(facts(), DEFAULTS, NOW)
    assert score.parts == {
        "role": 30.0,
        "volume": 12.5,
        "engagement": 7.5,
        "order_recency": 5.0,
        "reply_recency": 5.0,
    }
    assert score.score == 60


def test_a_contact_with_nothing_to_go_on_scores_only_its_role() -> None:
    score = lead_score(
        facts(
            role_code="UW",
            client_orders=0,
            busiest_client_orders=0,
            engagement_score=0.0,
            engagement_at=None,
            client_last_ordered_at=None,
            last_replied_at=None,
        ),
        DEFAULTS,
        NOW,
    )
    assert score.parts == {
        "role": 12.0,
        "volume": 0.0,
        "engagement": 0.0,
        "order_recency": 0.0,
        "reply_recency": 0.0,
    }
    assert score.score == 12


def test_a_role_is_weighed_by_its_code_then_its_category_then_as_unknown() -> None:
    assert DEFAULTS.role_part("lo", None) == 1.0  # codes are matched without regard to case
    assert DEFAULTS.role_part("VM", "vendor_management") == 1.0
    assert DEFAULTS.role_part("XYZ", "underwriting") == 0.4
    assert DEFAULTS.role_part("XYZ", "not-a-category") == 0.3
    assert DEFAULTS.role_part(None, None) == 0.3
    custom = LeadScoringSettings(role_codes={"uw": 0.9}, unknown_role=0.0)
    assert custom.role_part("UW", None) == 0.9
    # A map given replaces the default one: LO is now weighed by its category.
    assert custom.role_part("LO", "loan_origination") == 1.0
    assert custom.role_part("LO", None) == 0.0


def test_an_organizations_weights_change_what_counts() -> None:
    only_engagement = LeadScoringSettings(
        role_weight=0,
        volume_weight=0,
        engagement_weight=1,
        order_recency_weight=0,
        reply_recency_weight=0,
    )
    score = lead_score(facts(), only_engagement, NOW)
    assert score.score == 30  # 60 halved over 30 days
    assert score.parts["engagement"] == 30.0
    assert score.parts["role"] == 0.0


def test_engagement_fades_with_the_half_life_of_engagement_scores() -> None:
    fresh = lead_score(facts(engagement_at=NOW), DEFAULTS, NOW)
    month = lead_score(facts(engagement_at=NOW - timedelta(days=30)), DEFAULTS, NOW)
    assert fresh.parts["engagement"] == 15.0
    assert month.parts["engagement"] == 7.5


def test_settings_refuse_what_cannot_score() -> None:
    with pytest.raises(ValidationError, match="at least one of the lead-scoring weights"):
        LeadScoringSettings(
            role_weight=0,
            volume_weight=0,
            engagement_weight=0,
            order_recency_weight=0,
            reply_recency_weight=0,
        )
    with pytest.raises(ValidationError):
        LeadScoringSettings(role_weight=1.5)
    with pytest.raises(ValidationError):
        LeadScoringSettings.model_validate({"volume_window_days": 10})
    with pytest.raises(ValidationError, match="Extra inputs"):
        LeadScoringSettings.model_validate({"weight_of_vibes": 1})
    with pytest.raises(ValidationError):
        LeadScoringSettings.model_validate({"role_codes": {"LO": 2}})


def test_the_analytics_settings_carry_both_sections_with_their_defaults() -> None:
    parsed = AnalyticsSettings.model_validate({})
    assert parsed.lead_scoring == LeadScoringSettings()
    assert parsed.targeting == StaleTargetingSettings()
    assert parsed.targeting.stale_after_days == 90
    custom = AnalyticsSettings.model_validate(
        {"lead_scoring": {"enabled": False}, "targeting": {"stale_after_days": 120}}
    )
    assert custom.lead_scoring.enabled is False
    assert custom.targeting.stale_after_days == 120
    assert custom.tracking.opens is False


# --- properties ---------------------------------------------------------------------------

weights = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
moments = st.one_of(
    st.none(),
    st.integers(min_value=-3650, max_value=30).map(lambda d: NOW + timedelta(days=d)),
)


@st.composite
def any_settings(draw: st.DrawFn) -> LeadScoringSettings:
    values = {
        "role_weight": draw(weights),
        "volume_weight": draw(weights),
        "engagement_weight": draw(weights),
        "order_recency_weight": draw(weights),
        "reply_recency_weight": draw(weights),
    }
    if sum(values.values()) <= 0:
        values["role_weight"] = 0.5
    return LeadScoringSettings(
        **values,
        order_half_life_days=draw(st.integers(1, 3650)),
        reply_half_life_days=draw(st.integers(1, 3650)),
        unknown_role=draw(weights),
    )


@st.composite
def any_facts(draw: st.DrawFn) -> LeadFacts:
    busiest = draw(st.integers(0, 100_000))
    return LeadFacts(
        contact_id=1,
        role_code=draw(st.sampled_from([None, "LO", "VM", "UW", "ops", "??"])),
        role_category=draw(st.sampled_from([None, "processing", "other", "bogus"])),
        client_orders=draw(st.integers(0, busiest)),
        busiest_client_orders=busiest,
        engagement_score=draw(st.floats(min_value=0.0, max_value=100.0, allow_nan=False)),
        engagement_at=draw(moments),
        client_last_ordered_at=draw(moments),
        last_replied_at=draw(moments),
    )


@settings(max_examples=300, deadline=None)
@given(any_facts(), any_settings())
def test_a_score_is_always_between_0_and_100(lead: LeadFacts, chosen: LeadScoringSettings) -> None:
    score = lead_score(lead, chosen, NOW)
    assert 0 <= score.score <= 100
    assert all(points >= 0 for points in score.parts.values())
    assert abs(sum(score.parts.values()) - score.score) <= 0.5 + 0.01 * len(score.parts)


@settings(max_examples=300, deadline=None)
@given(any_facts(), any_settings(), st.floats(min_value=0.0, max_value=100.0, allow_nan=False))
def test_more_engagement_never_lowers_a_score(
    lead: LeadFacts, chosen: LeadScoringSettings, more: float
) -> None:
    higher = replace(lead, engagement_score=min(100.0, lead.engagement_score + more))
    assert lead_score(higher, chosen, NOW).score >= lead_score(lead, chosen, NOW).score


@settings(max_examples=300, deadline=None)
@given(any_facts(), any_settings(), st.integers(0, 100_000))
def test_more_orders_never_lower_a_score(
    lead: LeadFacts, chosen: LeadScoringSettings, more: int
) -> None:
    orders = min(lead.busiest_client_orders, lead.client_orders + more)
    higher = replace(lead, client_orders=orders)
    assert lead_score(higher, chosen, NOW).score >= lead_score(lead, chosen, NOW).score


# --- scoring contacts again ---------------------------------------------------------------


class LeadRepo:
    """LeadScoreRepository over a few contacts' facts; keeps what was written."""

    def __init__(self, context: LeadContext, known: dict[int, LeadFacts]) -> None:
        self.context = context
        self.known = known
        self.saved: list[tuple[list[tuple[int, int]], datetime]] = []
        self.asked: list[tuple[datetime, datetime, int]] = []

    def lead_context(self, org_id: int) -> LeadContext:
        return self.context

    def busiest_client_orders(self, org_id: int, *, since: datetime, until: datetime) -> int:
        return 40

    def lead_facts_of(
        self,
        org_id: int,
        *,
        contact_ids: Sequence[int],
        client_ids: Sequence[int],
        since: datetime,
        until: datetime,
        busiest: int,
    ) -> list[LeadFacts]:
        self.asked.append((since, until, busiest))
        return [replace(self.known[i], busiest_client_orders=busiest) for i in contact_ids]

    def save_lead_scores(
        self, org_id: int, scores: Sequence[tuple[int, int]], *, at: datetime
    ) -> None:
        self.saved.append((list(scores), at))


def test_contacts_are_scored_again_as_of_the_event() -> None:
    repo = LeadRepo(
        LeadContext(DEFAULTS, busiest_client_orders=99, scored_at=NOW - timedelta(hours=5)),
        {1: facts()},
    )
    assert rescore_contacts(repo, 7, at=NOW, contact_ids=[1]) == 1
    assert repo.asked == [(NOW - timedelta(days=365), NOW, 99)]
    assert repo.saved == [([(1, 60)], NOW)]


def test_an_event_recorded_late_is_scored_as_of_the_last_daily_run() -> None:
    # An order imported after the fact: scored as of the last run, never back in time.
    run = NOW - timedelta(hours=5)
    repo = LeadRepo(LeadContext(DEFAULTS, busiest_client_orders=99, scored_at=run), {1: facts()})
    rescore_contacts(repo, 7, at=NOW - timedelta(days=40), contact_ids=[1])
    assert repo.asked == [(run - timedelta(days=365), run, 99)]
    assert [at for _, at in repo.saved] == [run]


def test_before_the_first_daily_run_the_busiest_client_is_counted() -> None:
    repo = LeadRepo(LeadContext(DEFAULTS, busiest_client_orders=None, scored_at=None), {1: facts()})
    rescore_contacts(repo, 7, at=NOW, contact_ids=[1])
    assert repo.asked == [(NOW - timedelta(days=365), NOW, 40)]


def test_an_organization_that_turned_scoring_off_keeps_its_scores() -> None:
    off = LeadScoringSettings(enabled=False)
    repo = LeadRepo(LeadContext(off, busiest_client_orders=99, scored_at=None), {1: facts()})
    assert rescore_contacts(repo, 7, at=NOW, contact_ids=[1]) == 0
    assert repo.saved == []
    assert repo.asked == []


class Holder:
    def __init__(self) -> None:
        self.engagement = EngagementStore()


def test_recording_engagement_asks_for_the_contacts_lead_scores_once() -> None:
    holder = Holder()
    holder.engagement.add_contact(7, 1)
    holder.engagement.add_contact(7, 2)
    repo = FakeEngagement(holder)
    record_engagements(
        repo,
        org_id=7,
        events=[
            EngagementInput(2, EngagementEvent.POSITIVE_REPLY, NOW - timedelta(hours=1)),
            EngagementInput(1, EngagementEvent.REPLIED, NOW - timedelta(hours=3)),
            EngagementInput(9, EngagementEvent.REPLIED, NOW),  # no such contact
        ],
    )
    assert holder.engagement.lead_refreshes == [(7, (1, 2), NOW - timedelta(hours=1))]


@settings(max_examples=100, deadline=None)
@given(st.lists(any_facts(), min_size=1, max_size=20), any_settings())
def test_scoring_many_contacts_gives_each_its_own_score(
    many: list[LeadFacts], chosen: LeadScoringSettings
) -> None:
    numbered = [replace(f, contact_id=n) for n, f in enumerate(many, start=1)]
    assert score_all(numbered, chosen, NOW) == [
        (f.contact_id, lead_score(f, chosen, NOW).score) for f in numbered
    ]
