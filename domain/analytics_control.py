"""An organization's analytics settings for people: anyone of it reads them, admins (and
organization-wide API tokens) replace them.

Tracking is off by default (domain.analytics_settings.TrackingSettings says why); turning
it on applies to the campaign emails queued from then on, and turning it off to those
queued after: an email keeps what it was queued with.
"""

from __future__ import annotations

import logging

from domain.analytics_settings import AnalyticsSettings
from domain.outreach.cadence_control import require_admin
from domain.outreach.common import Actor
from domain.ports import AnalyticsSettingsUnitOfWork

log = logging.getLogger(__name__)


def read_analytics_settings(uow: AnalyticsSettingsUnitOfWork, org_id: int) -> AnalyticsSettings:
    """Return the organization's analytics settings (the defaults where it set none)."""
    with uow:
        return uow.analytics_settings.get(org_id)


def save_analytics_settings(
    uow: AnalyticsSettingsUnitOfWork,
    actor: Actor | None,
    org_id: int,
    settings: AnalyticsSettings,
) -> AnalyticsSettings:
    """Replace the organization's analytics settings (admins); return them as stored."""
    require_admin(actor, to="change the analytics settings")
    with uow:
        before = uow.analytics_settings.get(org_id)
        uow.analytics_settings.save(org_id, settings)
        uow.commit()
        stored = uow.analytics_settings.get(org_id)
    log.info(
        "analytics settings changed",
        extra={
            "org_id": org_id,
            "by": actor.user_id if actor is not None else None,
            "opens": [before.tracking.opens, stored.tracking.opens],
            "clicks": [before.tracking.clicks, stored.tracking.clicks],
        },
    )
    return stored
