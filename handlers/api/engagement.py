"""Engagement: a contact's timeline with its score, and what a campaign's sends brought back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from domain.engagement import CampaignEngagement, EngagementHistory
from domain.fields import Id
from handlers.api.deps import IdentityDep, ServicesDep, UowDep

router = APIRouter(tags=["engagement"])

Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next_cursor` of the previous page.",
    ),
]


@router.get("/api/contacts/{contact_id}/engagement-history", response_model=EngagementHistory)
def contact_engagement_history(
    contact_id: Id,
    who: IdentityDep,
    uow: UowDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> EngagementHistory:
    """Return a contact's engagement timeline, oldest first (sends, replies and their
    sentiment, the score after each event), with the score decayed to now and its trend."""
    with uow:
        return uow.engagement_views.contact_history(
            who.org_id, contact_id, now=services.clock.now(), limit=limit, cursor=cursor
        )


@router.get("/api/campaigns/{campaign_id}/engagement", response_model=CampaignEngagement)
def campaign_engagement(campaign_id: Id, who: IdentityDep, uow: UowDep) -> CampaignEngagement:
    """Return a campaign's sends, replies (positive, neutral, negative), meeting requests,
    opt-outs and bounces, with its reply rate, in total and by cadence step."""
    with uow:
        return uow.engagement_views.campaign_engagement(who.org_id, campaign_id)
