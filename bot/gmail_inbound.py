"""Wiring of Gmail inbound from settings: the push endpoint's deps, the sync, the processor.

The push endpoint works as soon as `PUBSUB_AUDIENCE` and `PUBSUB_SERVICE_ACCOUNT` are set:
it verifies and stores pushes. The sync and its background processor need a way to
reach a mailbox, `service_for_account(account_id)` → an authorized Gmail API resource;
without it, pushes are still stored durably and wait for a processor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.settings import Settings
from handlers.api.deps import Services
from handlers.gmail_push import GmailPushDeps
from integrations.gmail.sync import GmailSync, SyncSettings
from integrations.pubsub_auth import PushVerifier
from jobs.gmail_sync import GmailInboundProcessor, InboundSchedule
from storage.inbound import SqlInboundStore

log = logging.getLogger(__name__)


@dataclass
class GmailInbound:
    """The push endpoint's deps and, when mailboxes can be reached, the processor."""

    push: GmailPushDeps
    processor: GmailInboundProcessor | None

    def start(self) -> None:
        """Start the processor threads and the periodic Gmail jobs."""
        if self.processor is not None:
            self.processor.start()

    def stop(self) -> None:
        """Stop them."""
        if self.processor is not None:
            self.processor.stop()


def build_push_verifier(settings: Settings) -> PushVerifier | None:
    """Build the push token verifier, or None when Pub/Sub push is not configured."""
    if not (settings.PUBSUB_AUDIENCE and settings.PUBSUB_SERVICE_ACCOUNT):
        return None
    return PushVerifier(
        audience=settings.PUBSUB_AUDIENCE,
        service_account=settings.PUBSUB_SERVICE_ACCOUNT,
        certs_url=settings.GOOGLE_CERTS_URL,
    )


def production_sync_settings() -> SyncSettings:
    """Sync bounds for `salesbot serve`.

    Four fetches in flight per mailbox: Gmail answers in tens of milliseconds, and its
    per-user quota (250 units/s, 5 per messages.get) allows about 50 fetches a second.
    Parsing is CPU work and Python runs one thread at a time, so with cores to spare it
    runs in worker processes (started on the first sync, never while idle); on one or two
    cores the processes only add copying, and parsing stays in the fetching threads.
    """
    cpus = os.cpu_count() or 1
    return SyncSettings(fetch_threads=4, parse_workers=0 if cpus <= 2 else min(4, cpus - 2))


def build_gmail_inbound(
    settings: Settings,
    services: Services,
    *,
    service_for_account: Callable[[int], Any] | None,
    schedule: InboundSchedule | None = None,
    sync_settings: SyncSettings | None = None,
    on_parsed: Callable[[], None] | None = None,
) -> GmailInbound:
    """Wire Gmail push and sync on the app's database and clock."""
    store = SqlInboundStore(services.session_factory)
    processor: GmailInboundProcessor | None = None
    if service_for_account is not None:
        sync = GmailSync(
            store,
            service_for_account,
            services.clock,
            settings=sync_settings or production_sync_settings(),
        )
        processor = GmailInboundProcessor(
            sync=sync,
            store=store,
            session_factory=services.session_factory,
            clock=services.clock,
            topic=settings.PUBSUB_TOPIC,
            schedule=schedule,
            on_parsed=on_parsed,
        )
    elif settings.PUBSUB_AUDIENCE:
        log.warning("gmail pushes are stored but not synced: no Gmail service factory is wired")
    push = GmailPushDeps(
        store=store,
        clock=services.clock,
        verifier=build_push_verifier(settings),
        on_stored=processor.wake if processor is not None else _nothing,
    )
    return GmailInbound(push=push, processor=processor)


def _nothing() -> None:
    return None
