"""Lead scoring: how promising a contact is for outreach, 0 to 100 (issue 14).

A contact's score is a weighted mean of five parts, each between 0 and 1:

    role          = the weight of the contact's role_code (`role_codes`), else of its
                    role_category (`role_categories`), else `unknown_role`
    volume        = ln(1 + n) / ln(1 + N)   n: orders of the contact's client in the last
                    `volume_window_days` (365); N: the same count of the organization's
                    busiest client (at least n); 0 when N is 0
    engagement    = the contact's engagement score decayed to now (domain.engagement:
                    halved every 30 days since its latest event) / 100
    order_recency = 0.5 ^ (days since the client's last order / `order_half_life_days`)
                    (180); 0 when the client never ordered
    reply_recency = 0.5 ^ (days since the contact's last reply / `reply_half_life_days`)
                    (90); 0 when the contact never replied

    score = round(100 · Σ weight_p · part_p / Σ weight_p)

with the default weights role 0.30, volume 0.25, engagement 0.25, order_recency 0.10 and
reply_recency 0.10 (`LeadScoringSettings`; an organization sets its own in
`organizations.analytics_settings.lead_scoring`). Dividing by the sum of the weights keeps
the score within 0..100 whatever weights are chosen, and a part only ever adds: more
engagement or more orders never lowers a score. `LeadScore.parts` says how many of the
score's points each part brought (they add up to the score before rounding).

When scores are computed: daily for every contact of every organization (jobs/targeting.py,
then the stale-client ranking), and for the contacts whose engagement changes, at once
(`rescore_contacts`, called by domain.engagement inside the unit of work that records the
event: the contacts' rows are locked there already, it costs three statements, and
`min_lead_score` targeting sees the new score as soon as the event is committed), and for
the contacts of the clients an order import touched, once at the end of the import (an
import of a million orders touches each client many times: rescoring per batch would score
a contact hundreds of times; a crash before the end leaves it to the daily run).

Only the scores that changed are written (with `lead_score_at`, the time of the scoring
that set them): a daily run that finds a contact's score unchanged leaves its row alone,
instead of a new row version and an entry in each of the table's indexes for every
contact every day; `targeting_runs.computed_at` says when every contact was last scored.

`enabled: false` keeps the scores as they are (imported from a CRM, or set by an
`update_profile` task): nothing here writes them, and the ranking reads them as stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.contacts import RoleCategory
from domain.engagement import MAX_SCORE, decayed
from domain.fields import Label

if TYPE_CHECKING:
    from domain.ports import LeadScoreRepository

Weight = Annotated[float, Field(ge=0.0, le=1.0)]

# Loan officers and the vendor (panel) managers of AMCs order appraisals: they count most.
DEFAULT_ROLE_CODES: Final[Mapping[str, float]] = {
    "LO": 1.0,
    "MLO": 1.0,
    "VM": 1.0,
    "AMC": 1.0,
    "BM": 0.85,
    "AE": 0.7,
    "LP": 0.5,
    "PROC": 0.5,
    "UW": 0.4,
    "CLOSER": 0.3,
    "OPS": 0.3,
}
DEFAULT_ROLE_CATEGORIES: Final[Mapping[RoleCategory, float]] = {
    RoleCategory.LOAN_ORIGINATION: 1.0,
    RoleCategory.VENDOR_MANAGEMENT: 1.0,
    RoleCategory.LEADERSHIP: 0.8,
    RoleCategory.PROCESSING: 0.5,
    RoleCategory.UNDERWRITING: 0.4,
    RoleCategory.OPERATIONS: 0.3,
    RoleCategory.OTHER: 0.2,
}
PARTS: Final = ("role", "volume", "engagement", "order_recency", "reply_recency")
DAY: Final = timedelta(days=1)


class LeadScoringSettings(BaseModel):
    """How an organization scores its contacts (see the module docstring for the formula).

    Defaults: weights role 0.30, volume 0.25, engagement 0.25, order_recency 0.10,
    reply_recency 0.10; role weights LO, MLO, VM and AMC 1.0, BM 0.85, AE 0.7, LP and PROC
    0.5, UW 0.4, CLOSER and OPS 0.3 (role codes are matched without regard to case), by
    category loan_origination and vendor_management 1.0, leadership 0.8, processing 0.5,
    underwriting 0.4, operations 0.3, other 0.2, and 0.3 for a contact with neither;
    orders counted over 365 days; recency halved every 180 days since the client's last
    order and every 90 days since the contact's last reply. A map given replaces the
    default map as a whole.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="False: Salesbot writes no lead scores (they stay as imported or set).",
    )
    role_weight: Weight = 0.30
    volume_weight: Weight = 0.25
    engagement_weight: Weight = 0.25
    order_recency_weight: Weight = 0.10
    reply_recency_weight: Weight = 0.10
    role_codes: dict[Label, Weight] = Field(
        default_factory=lambda: dict(DEFAULT_ROLE_CODES), max_length=200
    )
    role_categories: dict[RoleCategory, Weight] = Field(
        default_factory=lambda: dict(DEFAULT_ROLE_CATEGORIES)
    )
    unknown_role: Weight = 0.3
    volume_window_days: int = Field(default=365, ge=30, le=1095)
    order_half_life_days: int = Field(default=180, ge=1, le=3650)
    reply_half_life_days: int = Field(default=90, ge=1, le=3650)

    @field_validator("role_codes")
    @classmethod
    def _upper_codes(cls, values: dict[str, float]) -> dict[str, float]:
        return {code.strip().upper(): weight for code, weight in values.items() if code.strip()}

    @model_validator(mode="after")
    def _some_weight(self) -> LeadScoringSettings:
        if self.total_weight <= 0:
            raise ValueError("at least one of the lead-scoring weights must be above 0")
        return self

    @property
    def total_weight(self) -> float:
        """The sum of the five weights (the score's divisor)."""
        return sum(self.weights().values())

    def weights(self) -> dict[str, float]:
        """The weight of each part, by part name."""
        return {
            "role": self.role_weight,
            "volume": self.volume_weight,
            "engagement": self.engagement_weight,
            "order_recency": self.order_recency_weight,
            "reply_recency": self.reply_recency_weight,
        }

    def role_part(self, role_code: str | None, role_category: str | None) -> float:
        """The weight of a contact's role: its code's, else its category's, else unknown."""
        if role_code:
            weight = self.role_codes.get(role_code.strip().upper())
            if weight is not None:
                return weight
        if role_category:
            try:
                category = RoleCategory(role_category)
            except ValueError:
                category = None
            if category is not None and category in self.role_categories:
                return self.role_categories[category]
        return self.unknown_role


@dataclass(frozen=True)
class LeadFacts:
    """What a contact's lead score is computed from."""

    contact_id: int
    role_code: str | None
    role_category: str | None
    #: Orders of the contact's client in the volume window (0 without a client).
    client_orders: int
    #: The same count of the organization's busiest client.
    busiest_client_orders: int
    #: The engagement score stored on the contact, reached at `engagement_at`.
    engagement_score: float
    engagement_at: datetime | None
    client_last_ordered_at: datetime | None
    last_replied_at: datetime | None
    #: The score stored now and when it was computed (None: never by Salesbot).
    stored_score: int | None = None
    stored_at: datetime | None = None


@dataclass(frozen=True)
class LeadScore:
    """A contact's score and the points each part brought."""

    score: int
    parts: dict[str, float]


@dataclass(frozen=True)
class LeadContext:
    """What scoring an organization's contacts needs besides each contact's facts."""

    settings: LeadScoringSettings
    #: The busiest client's orders in the window at the last daily run (None: no run yet).
    busiest_client_orders: int | None
    #: When the last daily run scored the organization (None: never).
    scored_at: datetime | None


def fading(since: datetime | None, *, now: datetime, half_life_days: int) -> float:
    """1 at `since`, halved every `half_life_days` after it; 0 without a date."""
    if since is None:
        return 0.0
    days = max(0.0, (now - since) / DAY)
    return float(0.5 ** (days / half_life_days))


def volume_part(orders: int, busiest: int) -> float:
    """ln(1 + orders) / ln(1 + busiest): 1 for the busiest client, 0 without orders."""
    orders = max(0, orders)
    reference = max(busiest, orders)
    if reference <= 0:
        return 0.0
    return math.log1p(orders) / math.log1p(reference)


def _points(
    facts: LeadFacts,
    settings: LeadScoringSettings,
    now: datetime,
    weights: Sequence[float],
    total: float,
    role: float,
) -> list[float]:
    """The points of each part (in PARTS order) given the weights (same order), their sum
    and the weight of the contact's role."""
    engagement = decayed(facts.engagement_score, since=facts.engagement_at or now, at=now)
    parts = (
        role,
        volume_part(facts.client_orders, facts.busiest_client_orders),
        min(max(engagement, 0.0), MAX_SCORE) / MAX_SCORE,
        fading(facts.client_last_ordered_at, now=now, half_life_days=settings.order_half_life_days),
        fading(facts.last_replied_at, now=now, half_life_days=settings.reply_half_life_days),
    )
    return [100.0 * weight * part / total for weight, part in zip(weights, parts, strict=True)]


def _total(points: Sequence[float]) -> int:
    return min(100, max(0, round(sum(points))))


def lead_score(facts: LeadFacts, settings: LeadScoringSettings, now: datetime) -> LeadScore:
    """Return a contact's lead score (0..100) at `now` and the points of each part."""
    weights = settings.weights()
    role = settings.role_part(facts.role_code, facts.role_category)
    points = _points(facts, settings, now, [weights[p] for p in PARTS], settings.total_weight, role)
    return LeadScore(
        score=_total(points),
        parts={name: round(value, 2) for name, value in zip(PARTS, points, strict=True)},
    )


def changed_scores(
    facts: Sequence[LeadFacts], settings: LeadScoringSettings, now: datetime
) -> list[tuple[int, int]]:
    """Return (contact id, score) for the contacts whose score is not the one stored (or
    was never computed by Salesbot): the only rows worth writing."""
    stored = {f.contact_id: (f.stored_score, f.stored_at) for f in facts}
    return [
        (contact_id, score)
        for contact_id, score in score_all(facts, settings, now)
        if stored[contact_id][1] is None or stored[contact_id][0] != score
    ]


def score_all(
    facts: Sequence[LeadFacts], settings: LeadScoringSettings, now: datetime
) -> list[tuple[int, int]]:
    """Return (contact id, score) for each contact's facts: `lead_score`'s scores, the
    weights read once for all of them."""
    weights = settings.weights()
    ordered = [weights[p] for p in PARTS]
    total = settings.total_weight
    roles: dict[tuple[str | None, str | None], float] = {}
    scores = []
    for f in facts:
        key = (f.role_code, f.role_category)
        role = roles.get(key)
        if role is None:
            role = roles[key] = settings.role_part(*key)
        scores.append((f.contact_id, _total(_points(f, settings, now, ordered, total, role))))
    return scores


def rescore_contacts(
    repo: LeadScoreRepository,
    org_id: int,
    *,
    at: datetime,
    contact_ids: Sequence[int] = (),
    client_ids: Sequence[int] = (),
) -> int:
    """Score again these contacts (and every contact of these clients), inside the caller's
    unit of work; return how many were scored (0 when the organization turned scoring off).

    The scores are those at `at` (the time of the event that changed them), or at the
    organization's last daily run if that came later (an event recorded late, such as an
    order imported after the fact), so a contact's `lead_score_at` never goes back.
    """
    if not contact_ids and not client_ids:
        return 0
    context = repo.lead_context(org_id)
    settings = context.settings
    if not settings.enabled:
        return 0
    as_of = max(at, context.scored_at) if context.scored_at is not None else at
    since = as_of - timedelta(days=settings.volume_window_days)
    busiest = context.busiest_client_orders
    if busiest is None:
        busiest = repo.busiest_client_orders(org_id, since=since, until=as_of)
    facts = repo.lead_facts_of(
        org_id,
        contact_ids=contact_ids,
        client_ids=client_ids,
        since=since,
        until=as_of,
        busiest=busiest,
    )
    repo.save_lead_scores(org_id, changed_scores(facts, settings, as_of), at=as_of)
    return len(facts)
