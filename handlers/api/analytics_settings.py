"""The organization's analytics settings: `GET/PUT /api/marketing/analytics-settings`.

The whole `organizations.analytics_settings` object (domain.analytics_settings): open and
click tracking (off by default) and the sections the scoring and targeting modules add.
Anyone of the organization reads it; admins (and organization-wide tokens) replace it. A
PUT replaces the whole object: a section or field left out takes its default; an unknown
field is refused with its name (422).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from domain.analytics_control import read_analytics_settings, save_analytics_settings
from domain.analytics_settings import AnalyticsSettings
from handlers.api.deps import ActorDep, IdentityDep, UowDep

router = APIRouter(prefix="/api/marketing", tags=["marketing"])


@router.get("/analytics-settings", response_model=AnalyticsSettings)
def read_settings(who: IdentityDep, uow: UowDep) -> AnalyticsSettings:
    """Return the organization's analytics settings (tracking is off until an admin turns
    it on)."""
    return read_analytics_settings(uow, who.org_id)


@router.put("/analytics-settings", response_model=AnalyticsSettings)
def replace_settings(
    body: Annotated[AnalyticsSettings, Body()], who: IdentityDep, actor: ActorDep, uow: UowDep
) -> AnalyticsSettings:
    """Replace the organization's analytics settings (admins). Tracking opens adds a 1×1
    pixel to campaign emails, tracking clicks sends their links through a redirect; both
    apply to emails queued from now on."""
    return save_analytics_settings(uow, actor, who.org_id, body)
