"""Background Gmail inbound work: stored pushes drained off the request path, periodic jobs.

`GmailInboundProcessor` runs
- processor threads, woken by the push endpoint (`wake()`), that claim stored push
  notifications and sync their mailboxes;
- APScheduler jobs: a catch-up sync of mailboxes not synced for a few minutes (lost
  pushes), a retry of messages whose fetch failed, a daily renewal of watches that
  expire within two days, and a purge of old notifications. On PostgreSQL each tick
  takes an advisory lock, so one replica runs it.

Tests and benchmarks call `run_pending()`, `catch_up()`, `retry_failed()` and
`renew_watches()` directly instead of starting threads.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from domain.clock import Clock
from domain.errors import ExternalServiceError
from domain.inbound import ClaimedNotification
from integrations import metrics
from integrations.gmail.sync import FetchOutcome, GmailSync, SyncResult
from jobs.loop import PollingThreads
from storage.db import SessionFactory
from storage.inbound import SqlInboundStore, periodic_lock

log = logging.getLogger(__name__)

T = TypeVar("T")

# Before any watch's expiry: `accounts_needing_watch` then lists mailboxes never watched.
_NEVER_WATCHED = datetime(1970, 1, 2, tzinfo=UTC)


@dataclass(frozen=True)
class InboundSchedule:
    """How often the periodic jobs run, and the bounds of a processor round."""

    catch_up_every: timedelta = timedelta(minutes=5)
    retry_every: timedelta = timedelta(minutes=1)
    renew_watches_every: timedelta = timedelta(days=1)
    # Watches expiring sooner than this are renewed (Gmail's last a week).
    renew_within: timedelta = timedelta(days=2)
    # Done notifications are deleted after this long.
    keep_notifications: timedelta = timedelta(days=7)
    # A processor's hold on claimed notifications; a crashed worker's come back after it.
    notification_lease: timedelta = timedelta(minutes=5)
    claim_size: int = 500
    retry_batch: int = 200
    # A processor thread with nothing to do looks again after this many seconds anyway
    # (notifications stored by another replica, retries that became due). Under `salesbot
    # web` + `salesbot worker` every push is stored by a web process and cannot wake the
    # worker's threads: at 10 s a reply waited 4.4 s (median) and 10 s at worst before its
    # sync (`python -m bench reply_card_latency`, scenario c). A claim when idle is one
    # indexed statement; two threads asking once a second cost the database little.
    poll_seconds: float = 1.0
    threads: int = 2


class GmailInboundProcessor:
    """Drains stored Gmail pushes in background threads and runs the periodic Gmail jobs."""

    def __init__(
        self,
        *,
        sync: GmailSync,
        store: SqlInboundStore,
        session_factory: SessionFactory,
        clock: Clock,
        topic: str | None,
        schedule: InboundSchedule | None = None,
        on_parsed: Callable[[], None] | None = None,
    ) -> None:
        self._sync = sync
        # Called after a sync or a retry stored parsed messages (wakes the inbound pipeline).
        self.on_parsed = on_parsed
        self._store = store
        self._sessions = session_factory
        self._clock = clock
        self._topic = topic
        self._schedule = schedule or InboundSchedule()
        # Mailboxes whose notifications a thread of this processor has claimed.
        self._claiming = threading.Lock()
        self._busy: set[int] = set()
        self._threads = PollingThreads(
            self.process_batch,
            threads=self._schedule.threads,
            poll_seconds=self._schedule.poll_seconds,
            name="gmail-inbound",
        )
        self._scheduler: BackgroundScheduler | None = None

    # -- push notifications -------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the processor threads that a notification was stored."""
        self._threads.wake()

    def process_batch(self) -> int:
        """Claim a batch of due notifications and sync their mailboxes; return how many.

        Notifications of a mailbox another thread of this processor is syncing are left
        for later: that sync may already cover them, and two syncs of one mailbox at once
        only fetch the same history twice. Claiming and marking the mailboxes busy happen
        under one lock, so two threads woken by one push do not both take the mailbox.
        """
        now = self._clock.now()
        with self._claiming:
            claimed = self._store.claim_notifications(
                limit=self._schedule.claim_size,
                now=now,
                lease_until=now + self._schedule.notification_lease,
                skip_accounts=tuple(self._busy),
            )
            by_account: dict[int, list[ClaimedNotification]] = defaultdict(list)
            for note in claimed:
                by_account[note.account_id].append(note)
            self._busy.update(by_account)
        for account_id, notes in by_account.items():
            try:
                self._process_account(account_id, notes)
            finally:
                with self._claiming:
                    self._busy.discard(account_id)
        return len(claimed)

    def _process_account(self, account_id: int, notes: list[ClaimedNotification]) -> None:
        try:
            state = self._store.sync_state(account_id)
            newest = max(note.history_id for note in notes)
            # Everything up to the stored pointer is stored already: nothing to ask Gmail.
            behind = (
                state is not None
                and state.syncable
                and (state.history_id is None or state.history_id < newest)
            )
            if behind:
                self._fetched(self._sync.sync_account(account_id))
        except ExternalServiceError as exc:
            log.warning(
                "gmail push processing failed; will retry",
                extra={"account_id": account_id, "reason": exc.message},
            )
            self._store.defer_notifications(notes, error=exc.message, now=self._clock.now())
            return
        except Exception as exc:  # noqa: BLE001 - kept on the rows and retried, never dropped
            log.exception("gmail push processing crashed", extra={"account_id": account_id})
            self._store.defer_notifications(
                notes, error=f"processing crashed ({type(exc).__name__})", now=self._clock.now()
            )
            return
        self._store.finish_notifications((note.id for note in notes), now=self._clock.now())

    def _fetched(self, outcome: SyncResult | FetchOutcome) -> None:
        """Count a fetch's messages; wake the pipeline when some were parsed."""
        for name in ("parsed", "failed", "gone"):
            count = getattr(outcome, name, 0)
            if count:
                metrics.INBOUND_MESSAGES.labels("fetch", name).inc(count)
        if outcome.parsed and self.on_parsed is not None:
            self.on_parsed()

    def run_pending(self, *, max_rounds: int = 10_000) -> int:
        """Process notifications until none is due; return how many were processed."""
        total = 0
        for _ in range(max_rounds):
            done = self.process_batch()
            if not done:
                break
            total += done
        return total

    # -- periodic jobs ------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Sync every connected mailbox not synced recently; return how many were synced."""
        return self._locked("gmail-catch-up", self._catch_up, default=0)

    def _catch_up(self) -> int:
        now = self._clock.now()
        if self._topic:
            # A mailbox connected since the last round gets its watch now, not at the daily
            # renewal: pushes start, and the watch's historyId becomes its first pointer,
            # so the sync below lists its history instead of a full sync.
            self._watch(self._store.accounts_needing_watch(expiring_before=_NEVER_WATCHED))
        due = self._store.accounts_due_for_sync(synced_before=now - self._schedule.catch_up_every)
        synced = 0
        for account_id in due:
            try:
                self._fetched(self._sync.sync_account(account_id))
                synced += 1
            except ExternalServiceError as exc:
                log.warning(
                    "gmail catch-up sync failed",
                    extra={"account_id": account_id, "reason": exc.message},
                )
        purged = self._store.purge_notifications(
            processed_before=now - self._schedule.keep_notifications
        )
        if purged:
            log.info("gmail push notifications purged", extra={"count": purged})
        return synced

    def retry_failed(self) -> int:
        """Fetch again the messages whose fetch failed; return how many were parsed."""
        return self._locked("gmail-retry", self._retry_failed, default=0)

    def _retry_failed(self) -> int:
        total = 0
        while True:
            outcome = self._sync.retry_due(limit=self._schedule.retry_batch)
            total += outcome.parsed
            self._fetched(outcome)
            if outcome.parsed + outcome.failed + outcome.gone < self._schedule.retry_batch:
                return total

    def renew_watches(self) -> int:
        """Renew watches that are missing or expire soon; return how many were renewed."""
        return self._locked("gmail-watch-renewal", self._renew_watches, default=0)

    def _renew_watches(self) -> int:
        if not self._topic:
            log.warning("gmail watches not renewed: PUBSUB_TOPIC is not set")
            return 0
        expiring_before = self._clock.now() + self._schedule.renew_within
        return self._watch(self._store.accounts_needing_watch(expiring_before=expiring_before))

    def _watch(self, account_ids: list[int]) -> int:
        if not self._topic:
            return 0
        renewed = 0
        for account_id in account_ids:
            try:
                self._sync.watch(account_id, topic=self._topic)
                renewed += 1
            except ExternalServiceError as exc:
                log.warning(
                    "gmail watch renewal failed",
                    extra={"account_id": account_id, "reason": exc.message},
                )
        return renewed

    def _locked(self, name: str, job: Callable[[], T], *, default: T) -> T:
        with periodic_lock(self._sessions, name) as taken:
            if not taken:
                log.debug("periodic job running elsewhere", extra={"job": name})
                return default
            return job()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the processor threads and the scheduler."""
        if self._scheduler is not None:
            return
        self._threads.start()
        scheduler = BackgroundScheduler(timezone=UTC)
        first_run = datetime.now(UTC) + timedelta(seconds=30)
        jobs: list[tuple[str, Callable[[], Any], timedelta]] = [
            ("gmail-catch-up", self.catch_up, self._schedule.catch_up_every),
            ("gmail-retry", self.retry_failed, self._schedule.retry_every),
            ("gmail-watch-renewal", self.renew_watches, self._schedule.renew_watches_every),
        ]
        for job_id, func, every in jobs:
            scheduler.add_job(
                _logged(job_id, func),
                IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
                id=job_id,
                name=job_id,
                next_run_time=first_run,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=int(every.total_seconds()),
            )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop the scheduler and the threads after their current round."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self._threads.stop()
        self._sync.close()


def _logged(job_id: str, func: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            func()
        except Exception:  # noqa: BLE001 - a failed tick is logged; the next one runs anyway
            log.exception("gmail periodic job failed", extra={"job": job_id})

    return run
