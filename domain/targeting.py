"""Stale-client targeting: the daily ranking of the clients worth winning back (issue 14).

Candidates are the clients whose last order is older than `stale_after_days` (90 by
default, domain.engagement.STALE_CLIENT_AFTER). A client that never ordered is no
candidate: there is nothing to win back. Nor is a client without a reachable contact (every
one opted out, bounced, complained or paused): there is nobody to win it back through.

Each candidate is scored from three parts, each between 0 and 1:

    order_rate       = ln(1 + r) / ln(1 + R)   r: the client's orders a month over its
                       active period, from its first order until it went stale (its last
                       order + stale_after_days); R: the highest r among the candidates
    engagement_decay = how far the best contact's engagement fell from its peak over the
                       last `decay_window_days` (180): (peak − now) / 100, where the peak is
                       the highest score an engagement event reached in the window and now
                       is the stored score decayed to now (0 when it did not fall)
    lead_score       = the best contact's lead score / 100

    score = 100 · (0.5 · order_rate + 0.2 · engagement_decay + 0.3 · lead_score) / Σ weights

(`StaleTargetingSettings` holds the weights). A client that ordered a lot is worth the
most; one whose contact was warm and is cooling comes next, before the interest is gone;
the contact's lead score says how likely the call is to land. The best contact is the
reachable contact with the highest lead score (ties: the higher engagement, then the
lower id). Ties of score go to the higher order rate, then the more recent last order,
then the lower client id, so the ranking is the same whichever database computes it.

The ranking keeps the top `top_size` clients (1000), replaced as a whole each day in one
transaction, each with the reasons it ranks where it does (`reasons`, JSON: the order
rate, the engagement that fell and the days since the last positive interaction, the best
contact's lead score, the points each brought, and a sentence for people), which the
digest ("clients worth a call this week"), `GET /api/marketing/stale-clients` and
`/campaign launch <name> --stale-top N` read.

`Targeting.recompute` scores every contact of the organization first (in pages, a commit
a page, so no contact row stays locked for long), then ranks on the fresh scores.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.deps import Deps
from domain.engagement import MAX_SCORE, STALE_CLIENT_AFTER, decayed
from domain.errors import InvalidInput, NotPermitted, SalesbotError
from domain.lead_scoring import changed_scores

if TYPE_CHECKING:
    from domain.outreach.common import Actor
    from domain.ports import TargetingUnitOfWork

log = logging.getLogger(__name__)

DAYS_A_MONTH: Final = 30.4375
# A daily run that failed is tried again after this long (not at every hourly check).
RETRY_AFTER: Final = timedelta(hours=1)
# The ranking is computed again once it is this old.
MAX_AGE: Final = timedelta(hours=24)


class StaleTargetingSettings(BaseModel):
    """Which clients are stale and how they are ranked (see the module docstring).

    Defaults: stale after 90 days without an order; weights order_rate 0.5,
    engagement_decay 0.2, lead_score 0.3; engagement decay over the last 180 days; the
    top 1000 clients kept.
    """

    model_config = ConfigDict(extra="forbid")

    stale_after_days: int = Field(default=STALE_CLIENT_AFTER.days, ge=7, le=3650)
    order_rate_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    engagement_decay_weight: float = Field(default=0.2, ge=0.0, le=1.0)
    lead_score_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    decay_window_days: int = Field(default=180, ge=7, le=3650)
    top_size: int = Field(default=1000, ge=1, le=5000)

    @model_validator(mode="after")
    def _some_weight(self) -> StaleTargetingSettings:
        if self.order_rate_weight + self.engagement_decay_weight + self.lead_score_weight <= 0:
            raise ValueError("at least one of the ranking weights must be above 0")
        return self

    @property
    def stale_after(self) -> timedelta:
        """How long without an order makes a client stale."""
        return timedelta(days=self.stale_after_days)


@dataclass(frozen=True)
class BestContact:
    """A stale client's reachable contact with the highest lead score."""

    contact_id: int
    lead_score: int | None
    #: The engagement score stored on the contact, reached at `engagement_at`.
    engagement_score: float
    engagement_at: datetime | None
    #: The highest score an engagement event reached in the decay window (None: no event).
    engagement_peak: float | None
    last_positive_interaction_at: datetime | None


@dataclass(frozen=True)
class StaleClientFacts:
    """A candidate client: its orders, and its reachable contacts."""

    client_id: int
    orders: int
    first_ordered_at: datetime | None
    last_ordered_at: datetime | None
    reachable_contacts: int
    best: BestContact | None


@dataclass(frozen=True)
class RankedStaleClient:
    """A client's place in the ranking, as stored in `client_rankings`."""

    client_id: int
    rank: int
    score: float
    days_since_order: int
    past_order_rate: float
    engagement_decay: float
    best_contact_id: int
    reasons: dict[str, Any]


@dataclass(frozen=True)
class Ranking:
    """What ranking the candidates gave: the ranked clients and what was left out."""

    ranked: list[RankedStaleClient]
    considered: int
    without_contact: int


@dataclass(frozen=True)
class TargetingRun:
    """An organization's latest run: scoring every contact, then ranking stale clients."""

    org_id: int
    #: When the last run that finished computed the scores and the ranking (None: never).
    computed_at: datetime | None
    #: When a run last started (a failed run is tried again an hour later).
    attempted_at: datetime | None = None
    busiest_client_orders: int = 0
    contacts_scored: int = 0
    clients_considered: int = 0
    clients_ranked: int = 0
    duration_ms: int | None = None
    #: Why the last run failed, until one succeeds.
    error: str | None = None


def _days(delta: timedelta) -> float:
    return delta / timedelta(days=1)


def rank_stale_clients(
    clients: Sequence[StaleClientFacts], settings: StaleTargetingSettings, now: datetime
) -> Ranking:
    """Rank the stale clients worth winning back (the module docstring says how)."""
    stale_before = now - settings.stale_after
    considered = 0
    # (client, its best contact, its last order, orders a month, months active)
    eligible: list[tuple[StaleClientFacts, BestContact, datetime, float, float]] = []
    for c in clients:
        last = c.last_ordered_at
        if last is None or last >= stale_before or c.orders <= 0:
            continue  # never ordered, or not stale: nothing to win back
        considered += 1
        if c.best is None:
            continue  # nobody reachable to win it back through
        first = c.first_ordered_at or last
        months = _days(last + settings.stale_after - first) / DAYS_A_MONTH
        eligible.append((c, c.best, last, c.orders / months, months))
    top_rate = max((rate for _, _, _, rate, _ in eligible), default=0.0)
    weights = {
        "order_rate": settings.order_rate_weight,
        "engagement_decay": settings.engagement_decay_weight,
        "lead_score": settings.lead_score_weight,
    }
    total = sum(weights.values())
    scored: list[tuple[float, float, int, int, RankedStaleClient]] = []
    for c, best, last, rate, months in eligible:
        engagement_now = decayed(best.engagement_score, since=best.engagement_at or now, at=now)
        peak = best.engagement_peak
        fell = max(0.0, (peak or 0.0) - engagement_now)
        parts = {
            "order_rate": math.log1p(rate) / math.log1p(top_rate) if top_rate > 0 else 0.0,
            "engagement_decay": min(fell, MAX_SCORE) / MAX_SCORE,
            "lead_score": min(max(best.lead_score or 0, 0), 100) / 100,
        }
        points = {name: 100 * weights[name] * parts[name] / total for name in parts}
        score = round(sum(points.values()), 2)
        days_since_order = int(_days(now - last))
        positive = best.last_positive_interaction_at
        days_since_positive = int(_days(now - positive)) if positive is not None else None
        reasons: dict[str, Any] = {
            "summary": _summary(
                rate, months, days_since_order, fell, days_since_positive, best.lead_score
            ),
            "days_since_order": days_since_order,
            "reachable_contacts": c.reachable_contacts,
            "past_order_rate": {
                "orders": c.orders,
                "months_active": round(months, 1),
                "per_month": round(rate, 3),
                "points": round(points["order_rate"], 2),
            },
            "engagement_decay": {
                "peak": None if peak is None else round(peak, 1),
                "now": round(engagement_now, 1),
                "fell": round(fell, 1),
                "days_since_positive": days_since_positive,
                "points": round(points["engagement_decay"], 2),
            },
            "lead_score": {
                "contact_id": best.contact_id,
                "score": best.lead_score,
                "points": round(points["lead_score"], 2),
            },
        }
        entry = RankedStaleClient(
            client_id=c.client_id,
            rank=0,
            score=score,
            days_since_order=days_since_order,
            past_order_rate=round(rate, 4),
            engagement_decay=round(fell, 2),
            best_contact_id=best.contact_id,
            reasons=reasons,
        )
        scored.append((score, rate, days_since_order, c.client_id, entry))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2], s[3]))
    ranked = [
        replace(entry, rank=n) for n, (*_, entry) in enumerate(scored[: settings.top_size], start=1)
    ]
    return Ranking(ranked=ranked, considered=considered, without_contact=considered - len(eligible))


def _summary(
    rate: float,
    months: float,
    days_since_order: int,
    fell: float,
    days_since_positive: int | None,
    lead: int | None,
) -> str:
    """The reasons in one sentence, for the digest and the API."""
    parts = [
        f"{rate:.1f} orders a month over {months:.0f} month{'' if round(months) == 1 else 's'}",
        f"no order for {days_since_order} days",
    ]
    if fell >= 1:
        parts.append(f"engagement fell {fell:.0f} points from its peak")
    if days_since_positive is not None:
        parts.append(f"last positive interaction {days_since_positive} days ago")
    parts.append(
        "best contact's lead score not computed yet"
        if lead is None
        else f"best contact's lead score {lead}"
    )
    return "; ".join(parts)


# --- what the API shows ---------------------------------------------------------------


class RankedContact(BaseModel):
    """The contact to call at a stale client."""

    contact_id: int
    name: str
    email: str
    lead_score: int | None


class StaleClient(BaseModel):
    """A stale client of the ranking, with why it ranks there."""

    rank: int
    client_id: int
    client_name: str
    score: float = Field(description="0..100: order rate, engagement decay and lead score.")
    days_since_order: int | None
    last_ordered_at: datetime | None
    past_order_rate: float = Field(description="Orders a month while the client was active.")
    engagement_decay: float = Field(
        description="Points the best contact's engagement fell from its 180-day peak."
    )
    best_contact: RankedContact | None = Field(
        description="The reachable contact with the highest lead score (null: gone since)."
    )
    reasons: dict[str, Any]


class StaleClientRanking(BaseModel):
    """`GET /api/marketing/stale-clients`: the organization's latest ranking."""

    computed_at: datetime | None = Field(
        description="When the ranking was computed; null: never (see `note`)."
    )
    stale_after_days: int
    clients_considered: int = Field(description="Clients without an order in stale_after_days.")
    clients_ranked: int
    contacts_scored: int = Field(description="Lead scores computed by the same run.")
    duration_ms: int | None = Field(description="How long the run took.")
    last_error: str | None = Field(description="Why the latest daily run failed, if it did.")
    note: str | None = None
    clients: list[StaleClient]


NEVER_COMPUTED: Final = (
    "the stale-client ranking has not been computed for your organization yet: it is "
    "computed daily (the first run starts within the hour once Salesbot's worker runs); "
    "an admin can compute it now with `POST /api/marketing/stale-clients/recompute`"
)


# --- the use cases ------------------------------------------------------------------------


class Targeting:
    """Score every contact of an organization and rank its stale clients; read the ranking."""

    def __init__(self, deps: Deps[TargetingUnitOfWork], *, page: int = 5000) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self.page = page

    def recompute(self, org_id: int) -> TargetingRun:
        """Score every contact of the organization, then rank its stale clients; return the
        run. Each page of scores commits on its own; the ranking replaces the previous one
        in one transaction."""
        started = time.perf_counter()
        now = self._clock.now()
        with self._uow() as uow:
            context = uow.targeting.lead_context(org_id)
            settings = uow.targeting.targeting_settings(org_id)
            lead = context.settings
            since = now - timedelta(days=lead.volume_window_days)
            counts = uow.targeting.client_order_counts(org_id, since=since, until=now)
            busiest = max(counts.values(), default=0)
            scored = 0
            if lead.enabled:
                after = 0
                while True:
                    facts = uow.targeting.lead_facts_page(
                        org_id, after_id=after, limit=self.page, counts=counts, busiest=busiest
                    )
                    if not facts:
                        break
                    changed = changed_scores(facts, lead, now)
                    uow.targeting.save_lead_scores(org_id, changed, at=now)
                    uow.commit()
                    scored += len(facts)
                    after = facts[-1].contact_id
            clients = uow.targeting.stale_clients(
                org_id,
                stale_before=now - settings.stale_after,
                now=now,
                peak_since=now - timedelta(days=settings.decay_window_days),
            )
            ranking = rank_stale_clients(clients, settings, now)
            run = TargetingRun(
                org_id=org_id,
                computed_at=now,
                attempted_at=now,
                busiest_client_orders=busiest,
                contacts_scored=scored,
                clients_considered=ranking.considered,
                clients_ranked=len(ranking.ranked),
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
            uow.targeting.replace_ranking(org_id, ranking.ranked, run=run)
            uow.commit()
        log.info(
            "stale-client ranking computed",
            extra={
                "org_id": org_id,
                "contacts_scored": scored,
                "clients_considered": ranking.considered,
                "clients_ranked": len(ranking.ranked),
                "without_contact": ranking.without_contact,
                "duration_ms": run.duration_ms,
            },
        )
        return run

    def recompute_now(self, actor: Actor | None, org_id: int) -> TargetingRun:
        """Recompute at an admin's request (a token tied to no user acts for the org)."""
        if actor is not None and actor.org_id != org_id:
            raise NotPermitted("You can only recompute the ranking of your own organization.")
        if actor is not None and not actor.is_admin:
            raise NotPermitted(
                "Only an admin can recompute the stale-client ranking; it is recomputed daily."
            )
        return self.recompute(org_id)

    def recompute_due(self) -> int:
        """Recompute the organization whose ranking is the oldest, if it is older than a
        day (and its last attempt, if it failed, is an hour old); return 1 if one was
        recomputed or tried, 0 when none is due. A failure is recorded on the
        organization's run (shown by the API) and logged; the next organization follows."""
        now = self._clock.now()
        with self._uow() as uow:
            org_id = uow.targeting.claim_due_org(
                now=now, computed_before=now - MAX_AGE, attempted_before=now - RETRY_AFTER
            )
            uow.commit()
        if org_id is None:
            return 0
        try:
            self.recompute(org_id)
        except SalesbotError as exc:
            self._record_failure(org_id, exc.message)
        except Exception as exc:  # noqa: BLE001 - recorded on the org's run and logged; the next org runs
            log.exception("stale-client ranking failed", extra={"org_id": org_id})
            # The details (SQL, parameters) stay in the log; the API shows what to do.
            self._record_failure(
                org_id,
                f"the ranking failed unexpectedly ({type(exc).__name__}); it is tried again "
                "within the hour, and the service's log has the details",
            )
        return 1

    def _record_failure(self, org_id: int, reason: str) -> None:
        log.warning("stale-client ranking not computed", extra={"org_id": org_id, "reason": reason})
        with self._uow() as uow:
            uow.targeting.record_failure(org_id, error=reason)
            uow.commit()

    def ranking(self, org_id: int, *, limit: int) -> StaleClientRanking:
        """Return the organization's latest ranking, best first (at most `limit` clients)."""
        problem = None
        with self._uow() as uow:
            run = uow.targeting.last_run(org_id)
            try:
                settings = uow.targeting.targeting_settings(org_id)
            except InvalidInput as exc:
                # The stored ranking is still worth showing; the note says what to fix.
                settings, problem = StaleTargetingSettings(), exc.message
            clients = uow.targeting.ranking(org_id, limit=limit) if run else []
        computed = run.computed_at if run is not None else None
        return StaleClientRanking(
            computed_at=computed,
            stale_after_days=settings.stale_after_days,
            clients_considered=run.clients_considered if run and computed else 0,
            clients_ranked=run.clients_ranked if run and computed else 0,
            contacts_scored=run.contacts_scored if run and computed else 0,
            duration_ms=run.duration_ms if run and computed else None,
            last_error=run.error if run is not None else None,
            note=problem or (None if computed is not None else NEVER_COMPUTED),
            clients=clients,
        )
