"""The analytics refresh (issue 14): keeps `marketing_campaigns.metrics` up to date.

Every `salesbot worker` (and `salesbot serve`) schedules it every hour
(jobs/scheduler.py); it takes the periodic lock (`storage.inbound.periodic_lock`), so one
process refreshes at a time, and rewrites each campaign's lifetime totals from the
analytics read model (storage/analytics.py), the numbers the analytics route shows. One
transaction per organization: a long refresh never holds one organization's campaigns
while another's are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from domain.clock import Clock
from domain.ports import AnalyticsUnitOfWork
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME: Final = "salesbot:analytics-refresh"


class AnalyticsRefresh:
    """Rewrites every campaign's stored metrics, under the periodic lock."""

    NAME = "analytics-refresh"
    EVERY = timedelta(hours=1)

    def __init__(
        self,
        uow: Callable[[], AnalyticsUnitOfWork],
        session_factory: SessionFactory,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._sessions = session_factory
        self._clock = clock

    def run_once(self) -> int | None:
        """Refresh every organization's campaigns; return how many were written, None when
        another process is refreshing."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                log.debug("analytics refresh running elsewhere")
                return None
            now = self._clock.now()
            with self._uow() as uow:
                org_ids = uow.analytics.campaign_org_ids()
            written = 0
            for org_id in org_ids:
                with self._uow() as uow:
                    written += uow.analytics.refresh_campaign_metrics(org_id, now)
                    uow.commit()
        log.info(
            "campaign metrics refreshed",
            extra={"organizations": len(org_ids), "campaigns": written},
        )
        return written

    def run_round(self) -> int:
        """One refresh as a scheduler round: 0 (the next one is an hour away)."""
        self.run_once()
        return 0
