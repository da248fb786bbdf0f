"""The email side of campaigns (`email_campaigns`): each step's subjects and counts.

Read-only. Each answer refreshes the rows it shows from the analytics read model in its
own transaction first, so it equals what `GET /api/marketing/campaigns/{id}/analytics`
answers without a window (the campaign's whole life) at the same moment.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from domain.email_campaigns import MAX_PAGE, EmailCampaignStep, email_campaign_steps
from domain.fields import Id, Offset
from handlers.api.deps import IdentityDep, ServicesDep, UowDep
from handlers.api.docs import error_answer

router = APIRouter(prefix="/api/marketing", tags=["email campaigns"])


@router.get("/campaigns/{campaign_id}/email-campaigns", response_model=list[EmailCampaignStep])
def campaign_email_steps(
    campaign_id: Id, who: IdentityDep, uow: UowDep, services: ServicesDep
) -> list[EmailCampaignStep]:
    """Return a campaign's steps: the subject lines sent, and sent, delivered, bounced,
    unsubscribed and replied over the campaign's whole life (404: not this organization's
    campaign)."""
    return email_campaign_steps(who.org_id, campaign_id=campaign_id, uow=uow, clock=services.clock)


@router.get(
    "/email-campaigns",
    response_model=list[EmailCampaignStep],
    # `campaign_id` names a campaign in the query: one of another organization is 404.
    responses={404: error_answer(404)},
)
def list_email_campaigns(
    who: IdentityDep,
    uow: UowDep,
    services: ServicesDep,
    campaign_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Campaigns per page.")] = 50,
    offset: Offset = 0,
) -> list[EmailCampaignStep]:
    """Return the steps of one campaign (`campaign_id`; 404 when not this organization's)
    or of a page of the organization's campaigns (by campaign id), by campaign and step."""
    return email_campaign_steps(
        who.org_id,
        campaign_id=campaign_id,
        limit=limit,
        offset=offset,
        uow=uow,
        clock=services.clock,
    )
