"""An organization's analytics settings (`organizations.analytics_settings`).

One JSON object with a section per capability (domain.analytics_settings.AnalyticsSettings:
tracking, and the sections other modules add). Sections at their defaults are not stored,
so an empty object means the defaults. A stored section the running model does not know
(written by a newer release, or by a module this one lacks) is kept as it is by `save` and
left out by `get`; a known section that no longer validates is read as its defaults, with
a warning, rather than failing every send of the organization.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.analytics_settings import AnalyticsSettings
from storage import models as m

log = logging.getLogger(__name__)


def analytics_settings_from(stored: Mapping[str, Any] | None, *, org_id: int) -> AnalyticsSettings:
    """Read stored settings: known sections validated one by one, unknown ones left out."""
    known = AnalyticsSettings.model_fields
    sections: dict[str, Any] = {}
    for name, value in (stored or {}).items():
        if name not in known:
            continue
        try:
            AnalyticsSettings.model_validate({name: value})
        except ValidationError as exc:
            log.warning(
                "stored analytics settings section is not valid; its defaults apply",
                extra={"org_id": org_id, "section": name, "reason": str(exc)[:300]},
            )
            continue
        sections[name] = value
    return AnalyticsSettings.model_validate(sections)


class AnalyticsSettingsRepo:
    """Reads and replaces `organizations.analytics_settings`."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _stored(self, org_id: int, *, for_update: bool = False) -> dict[str, Any]:
        query = select(m.Organization.analytics_settings).where(m.Organization.id == org_id)
        if for_update:
            query = query.with_for_update()
        stored = self._s.scalar(query)
        return dict(stored) if isinstance(stored, Mapping) else {}

    def get(self, org_id: int) -> AnalyticsSettings:
        """Return the organization's settings (the defaults where it set none)."""
        return analytics_settings_from(self._stored(org_id), org_id=org_id)

    def save(self, org_id: int, settings: AnalyticsSettings) -> None:
        """Replace the sections the model knows; a stored section it does not know stays."""
        stored = self._stored(org_id, for_update=True)
        kept = {k: v for k, v in stored.items() if k not in AnalyticsSettings.model_fields}
        written = settings.model_dump(mode="json", exclude_defaults=True)
        self._s.execute(
            update(m.Organization)
            .where(m.Organization.id == org_id)
            .values(analytics_settings={**kept, **written})
        )
