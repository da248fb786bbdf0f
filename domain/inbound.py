"""Inbound mail sync: what is stored about mailboxes, push notifications and fetched messages.

Nothing inbound is lost: a push notification is stored before it is answered, a message
id is stored before the mailbox's history pointer moves past it, and a message that
could not be fetched or stored keeps its row with the error and is tried again later.
The port `InboundStore` is what the sync needs from storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, NamedTuple, Protocol

from domain.detection import Detection, DetectionContext
from domain.email_message import ParsedEmail

# A connected mailbox is synced; any other status (disconnected, revoked) is left alone.
CONNECTED: Final = "connected"

# Gmail labels whose messages are not mail a person sent or received.
SKIPPED_LABELS: Final = frozenset({"DRAFT", "SPAM", "TRASH", "CHAT"})

# Fetch attempts of one message before it waits for a person (status stays `failed`).
MAX_FETCH_ATTEMPTS: Final = 10
# Attempts to process one push notification before it is marked failed; the periodic
# catch-up sync covers its mailbox anyway.
MAX_NOTIFICATION_ATTEMPTS: Final = 8

_FIRST_RETRY: Final = timedelta(minutes=1)
_LONGEST_RETRY: Final = timedelta(hours=6)


class InboundStatus(StrEnum):
    """Where an inbound message is: its id stored, parsed, failing, or gone from Gmail."""

    RECEIVED = "received"  # the id is stored; the content is not fetched yet
    PARSED = "parsed"
    FAILED = "failed"  # fetching or storing failed; `error` says why; retried
    GONE = "gone"  # Gmail no longer has it (deleted before we fetched it)


class NotificationStatus(StrEnum):
    """Where a stored push notification is."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


def retry_delay(attempts: int) -> timedelta:
    """Return how long to wait before attempt `attempts + 1`: doubling, capped at 6 hours."""
    if attempts < 1:
        return _FIRST_RETRY
    doubling: int = 2 ** min(attempts - 1, 20)
    return min(_FIRST_RETRY * doubling, _LONGEST_RETRY)


def is_synced_message(label_ids: Sequence[str]) -> bool:
    """Tell whether a message with these labels is mail to store (not a draft, spam, chat)."""
    return not SKIPPED_LABELS.intersection(label_ids)


@dataclass(frozen=True)
class SyncState:
    """What the sync knows of a mailbox before it asks Gmail."""

    account_id: int
    org_id: int
    email: str
    status: str
    history_id: int | None
    last_synced_at: datetime | None
    watch_expires_at: datetime | None
    connected_at: datetime

    @property
    def syncable(self) -> bool:
        """Tell whether the mailbox is connected."""
        return self.status == CONNECTED


@dataclass(frozen=True)
class NewMessage:
    """A message id Gmail reported (history or list), before its content is fetched."""

    gmail_id: str
    thread_id: str | None = None
    label_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class MessageToFetch:
    """A stored message row whose content this worker is to fetch."""

    row_id: int
    account_id: int
    gmail_id: str
    attempts: int = 0


@dataclass(frozen=True)
class ClaimedNotification:
    """A push notification claimed for processing."""

    id: int
    account_id: int
    history_id: int
    attempts: int


@dataclass(frozen=True)
class PushNotice:
    """A Gmail push notification as Pub/Sub delivers it, decoded and checked."""

    message_id: str
    email: str
    history_id: int
    published_at: datetime | None = None


class ReadMessage(NamedTuple):
    """A fetched message as parsed, with what the detectors found in its raw bytes."""

    message: MessageToFetch
    parsed: ParsedEmail
    detection: Detection


@dataclass(frozen=True)
class RecordedMessages:
    """The outcome of recording message ids: the rows this worker owns, and the pointer."""

    to_fetch: tuple[MessageToFetch, ...]
    pointer_moved: bool


class InboundStore(Protocol):
    """What the Gmail sync needs from storage; each call is one short transaction."""

    def sync_state(self, account_id: int) -> SyncState | None:
        """Return a mailbox's sync state, or None if the account does not exist."""
        ...

    def record_messages(
        self,
        account_id: int,
        messages: Sequence[NewMessage],
        *,
        history_id: int,
        synced_at: datetime,
        lease_until: datetime,
    ) -> RecordedMessages:
        """Store new message ids and move the history pointer forward, in one transaction.

        Returns the rows this call inserted (ids already stored are someone else's);
        they wait until `lease_until` before the retry job may take them.
        """
        ...

    def detection_context(self, account_id: int) -> DetectionContext:
        """Return what the detectors must know of the mailbox's organization.

        Its reps' addresses (users and connected mailboxes) and the mailboxes whose
        `+unsub-<token>` plus-addresses our List-Unsubscribe headers carry.
        """
        ...

    def save_parsed(self, results: Sequence[ReadMessage]) -> None:
        """Store parsed messages and their detections on their rows (status parsed)."""
        ...

    def mark_failed(self, message: MessageToFetch, *, error: str, now: datetime) -> None:
        """Keep a message's row with its error and schedule its next attempt."""
        ...

    def mark_gone(self, message: MessageToFetch, *, error: str) -> None:
        """Record that Gmail no longer has a message."""
        ...

    def claim_retries(
        self, *, limit: int, now: datetime, lease_until: datetime
    ) -> list[MessageToFetch]:
        """Claim message rows due for another fetch."""
        ...

    def set_watch(
        self, account_id: int, *, expires_at: datetime, history_id: int | None = None
    ) -> None:
        """Remember when a mailbox's push watch expires.

        `history_id` is the one `users.watch` answered: it becomes the mailbox's history
        pointer if it has none yet (a newly connected mailbox), and is ignored otherwise.
        """
        ...
