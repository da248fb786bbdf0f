"""The `email_campaigns` sweep (issue 16): keeps the stored rows of campaigns fresh.

Every `salesbot worker` (and `salesbot serve`) schedules it every EVERY; it takes the
periodic lock (`storage.inbound.periodic_lock`), so one process sweeps at a time, and
refreshes each organization's due campaigns (domain/email_campaigns.py, `refresh_due`)
from the analytics read model. A process killed in the middle leaves each campaign's
previous rows or its new ones (one transaction per chunk); the next sweep, here or in
another process, finds the rest still due. The first run writes every campaign that has
sent email: the backfill of what was sent before the table existed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Final, Protocol

from domain.clock import Clock
from domain.email_campaigns import EmailCampaignUnitOfWork, refresh_due_email_campaigns
from domain.ports import AnalyticsReader
from storage.db import SessionFactory
from storage.inbound import periodic_lock

log = logging.getLogger(__name__)

LOCK_NAME: Final = "salesbot:email-campaigns-refresh"


class SweepUnitOfWork(EmailCampaignUnitOfWork, Protocol):
    @property
    def analytics(self) -> AnalyticsReader: ...


class EmailCampaignsRefresh:
    """Refreshes the due campaigns' `email_campaigns` rows, under the periodic lock."""

    NAME = "email-campaigns-refresh"
    EVERY = timedelta(minutes=10)

    def __init__(
        self,
        uow: Callable[[], SweepUnitOfWork],
        session_factory: SessionFactory,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._sessions = session_factory
        self._clock = clock

    def run_once(self) -> int | None:
        """Refresh every organization's due campaigns; return the rows written, None when
        another process is sweeping."""
        with periodic_lock(self._sessions, LOCK_NAME) as taken:
            if not taken:
                log.debug("email campaigns refresh running elsewhere")
                return None
            with self._uow() as uow:
                org_ids = uow.analytics.campaign_org_ids()
            written = 0
            for org_id in org_ids:
                written += refresh_due_email_campaigns(org_id, units=self._uow, clock=self._clock)
        log.info(
            "email campaigns refreshed", extra={"organizations": len(org_ids), "rows": written}
        )
        return written

    def run_round(self) -> int:
        """One sweep as a scheduler round: 0 (the next one is EVERY away)."""
        self.run_once()
        return 0
