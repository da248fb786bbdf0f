"""Stale-client targeting: the daily ranking of the clients worth winning back, and a
recompute on demand (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from domain.targeting import StaleClientRanking, Targeting
from handlers.api.deps import ActorDep, IdentityDep

router = APIRouter(prefix="/api/marketing", tags=["targeting"])

Limit = Annotated[int, Query(ge=1, le=1000, description="How many clients, best first.")]


def get_targeting(request: Request) -> Targeting:
    """Return the targeting use cases the app was built with."""
    targeting: Targeting = request.app.state.runtime.targeting
    return targeting


TargetingDep = Annotated[Targeting, Depends(get_targeting)]


@router.get("/stale-clients", response_model=StaleClientRanking)
def list_stale_clients(
    who: IdentityDep, targeting: TargetingDep, limit: Limit = 50
) -> StaleClientRanking:
    """The latest ranking of stale clients (no order in `stale_after_days`), best first, each
    with the reasons it ranks there and the contact to call. Computed daily; `computed_at`
    is null (and `note` says how to compute it) for an organization never ranked."""
    return targeting.ranking(who.org_id, limit=limit)


@router.post("/stale-clients/recompute", response_model=StaleClientRanking)
def recompute_stale_clients(
    who: IdentityDep, actor: ActorDep, targeting: TargetingDep, limit: Limit = 50
) -> StaleClientRanking:
    """Score every contact and rank the stale clients now, instead of waiting for the daily
    run (admins, or a token acting for the whole organization); answers the new ranking."""
    targeting.recompute_now(actor, who.org_id)
    return targeting.ranking(who.org_id, limit=limit)
