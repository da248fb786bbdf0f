"""Analytics: what a campaign's outreach did in a window (domain/analytics.py's numbers)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from domain.analytics import AnalyticsWindow, CampaignAnalytics
from domain.fields import Id
from handlers.api.deps import IdentityDep, ServicesDep, UowDep

router = APIRouter(prefix="/api/marketing", tags=["analytics"])

When = Annotated[
    datetime | None,
    Query(description="ISO 8601 with a time zone, e.g. 2026-12-01T00:00Z."),
]


@router.get("/campaigns/{campaign_id}/analytics", response_model=CampaignAnalytics)
def campaign_analytics(
    campaign_id: Id,
    who: IdentityDep,
    uow: UowDep,
    services: ServicesDep,
    since: When = None,
    until: When = None,
) -> CampaignAnalytics:
    """Return what a campaign did in [since, until): enrolled, sent, delivered, replies by
    sentiment, meetings, bounces, opt-outs, complaints and orders after a reply, in total,
    by cadence step and by rep, with opens and clicks of tracked sends. Without `since`
    the window starts with the campaign's first enrollment (or its creation); without
    `until` it ends now. A reversed, empty or future window is refused (422)."""
    now = services.clock.now()
    with uow:
        if since is not None and until is not None:
            window = AnalyticsWindow.checked(since, until, now=now)
        else:
            lifetime = uow.analytics.campaign_lifetime_window(who.org_id, campaign_id, now)
            window = AnalyticsWindow.checked(
                lifetime.since if since is None else since,
                now if until is None else until,
                now=now,
            )
        return uow.analytics.campaign_analytics(who.org_id, campaign_id, window)
