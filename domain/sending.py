"""The sending policy of the outbox, and the records it decides on.

A mailbox sends within its daily cap (counted over the last 24 hours) and keeps a minimum
spacing between two sends; one send at a time per mailbox. A send Gmail refused to carry
out for now (rate limited, quota, unreachable) waits with a jittered backoff. Everything
here is pure: the time, the counts and the randomness come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from domain.email_preferences import EmailType
from domain.errors import ExternalServiceError

CONSUMER_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})


@dataclass(frozen=True)
class SendLimits:
    """Throttles and timings of the sender; caps and spacing are kept per mailbox."""

    # Gmail allows about 2,000 a day from Workspace and 500 from consumer accounts.
    workspace_daily_cap: int = 400
    consumer_daily_cap: int = 100
    min_send_interval_seconds: int = 5
    window: timedelta = timedelta(hours=24)
    # A `sending` row is reconciled once its lease is over; longer than any Gmail call.
    lease: timedelta = timedelta(minutes=10)
    # After an unconfirmed send, wait this long before trusting a search that finds nothing.
    confirm_after: timedelta = timedelta(minutes=2)
    # A new row belongs to the caller this long before the outbox worker may take it.
    claim_grace: timedelta = timedelta(minutes=1)
    # A send holds its mailbox this long at most (one send at a time per mailbox); an
    # email that finds its mailbox busy tries again after `busy_retry` at the earliest.
    send_hold: timedelta = timedelta(minutes=2)
    busy_retry: timedelta = timedelta(milliseconds=500)
    max_inline_wait_seconds: float = 10.0
    max_inline_attempts: int = 3
    backoff_base_seconds: float = 2.0
    max_backoff: timedelta = timedelta(minutes=15)
    quota_pause: timedelta = timedelta(hours=1)
    disconnected_hold: timedelta = timedelta(hours=1)


def default_daily_cap(email: str, limits: SendLimits) -> int:
    """Return a new mailbox's daily cap: consumer Gmail gets the lower one."""
    domain = email.rsplit("@", 1)[-1].lower()
    return limits.consumer_daily_cap if domain in CONSUMER_DOMAINS else limits.workspace_daily_cap


def describe_time(at: datetime, now: datetime) -> str:
    """Say when, for a card: `09:00 UTC`, `15:00:05 UTC` when soon, `Nov 26 09:00 UTC`."""
    if at.date() != now.date():
        return f"{at:%b %d %H:%M} UTC"
    if at - now < timedelta(minutes=10):
        return f"{at:%H:%M:%S} UTC"
    return f"{at:%H:%M} UTC"


# --- what a failed call to the mailbox means ----------------------------------------------


class FailureKind(StrEnum):
    """What a failed mailbox call means for the message."""

    RATE_LIMITED = "rate_limited"  # 429 and the rate-limit 403s: not sent, try after a pause
    QUOTA = "quota"  # the mailbox's sending quota is used up: not sent, try much later
    REVOKED = "revoked"  # the grant is gone (invalid_grant): reconnect Gmail
    REFUSED = "refused"  # Gmail said no for good (bad address, no permission): not sent
    NOT_FOUND = "not_found"  # a thread or message does not exist
    UNCERTAIN = "uncertain"  # the request may have been carried out: search before retrying
    UNAVAILABLE = "unavailable"  # Gmail or Google OAuth unreachable before anything happened


_RETRYABLE: Final = frozenset(
    {FailureKind.RATE_LIMITED, FailureKind.QUOTA, FailureKind.UNCERTAIN, FailureKind.UNAVAILABLE}
)


class MailboxError(ExternalServiceError):
    """A call to a rep's mailbox failed; `kind` says whether anything may have happened."""

    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retryable=kind in _RETRYABLE)
        self.kind = kind
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


# --- the records the policy decides on ----------------------------------------------------


class OutboxStatus(StrEnum):
    """Where an outgoing email is.

    `failed` only ever means "Gmail certainly did not send it"; an attempt whose
    outcome is unknown stays `sending` until the mailbox is searched for its Message-ID.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxEmail:
    """One row of the outbox."""

    id: int
    org_id: int
    card_id: int | None
    job_id: int | None
    campaign_id: int | None
    enrollment_id: int | None
    contact_id: int | None
    gmail_account_id: int | None
    sender_user_id: int | None
    message_id: str
    gmail_message_id: str | None
    gmail_thread_id: str | None
    from_email: str | None
    to_email: str
    to_name: str | None
    subject: str
    body_text: str
    body_html: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    campaign_email: bool
    status: OutboxStatus
    attempt_count: int
    not_before: datetime | None
    sent_at: datetime | None
    error: str | None
    claimed_by: str | None
    claimed_until: datetime | None
    # Opens and clicks are tracked (its HTML carries the pixel and redirecting links).
    tracked: bool = False
    # What kind of email it is (None: a row written before types were kept).
    email_type: EmailType | None = None


@dataclass(frozen=True)
class MailboxSlot:
    """A mailbox as the throttle sees it, locked for the rest of the transaction."""

    account_id: int
    email: str
    connected: bool
    daily_send_cap: int
    min_send_interval_seconds: int
    next_send_at: datetime | None
    sending_until: datetime | None

    @property
    def interval(self) -> timedelta:
        """The least time between two sends from the mailbox."""
        return timedelta(seconds=self.min_send_interval_seconds)


@dataclass(frozen=True)
class MailMessage:
    """An email as the mailbox sends it: the outbox row with the sender's name and date."""

    message_id: str
    date: datetime
    from_email: str
    from_name: str | None
    to_email: str
    to_name: str | None
    subject: str
    body_text: str
    body_html: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # Campaign emails carry List-Unsubscribe and a footer link to this page.
    unsubscribe_url: str | None = None
    # The List-Unsubscribe mailto: our `+unsub-<token>` plus-address of the sending mailbox
    # (domain/unsubscribe_address.py), or None to use the mailbox's own address.
    unsubscribe_mailto: str | None = None


@dataclass(frozen=True)
class MessageRef:
    """The mailbox's ids of a message."""

    id: str
    thread_id: str


@dataclass(frozen=True)
class AccessTokenUpdate:
    """An access token the mailbox client obtained with the refresh token, to be kept."""

    access_token: str
    expires_at: datetime | None


# --- the daily cap ------------------------------------------------------------------------


@dataclass(frozen=True)
class CapPosition:
    """Where an email stands behind a mailbox's full daily cap."""

    sent: int  # sends (made or in flight) in the window
    offset: int  # this email goes when the offset-th send of the window (0 = oldest) ages out

    @property
    def known_offset(self) -> int:
        """The send of the window whose time is looked up (one that exists)."""
        return min(self.offset, max(self.sent - 1, 0))


def cap_position(slot: MailboxSlot, *, sent: int, ahead: int) -> CapPosition | None:
    """None while the daily cap has room; else which send must age out before this email.

    `ahead` is how many emails of the same mailbox were already deferred in this round.
    """
    if sent < slot.daily_send_cap:
        return None
    return CapPosition(sent=sent, offset=sent - slot.daily_send_cap + ahead)


def cap_reopens_at(
    position: CapPosition,
    *,
    aged_out: datetime | None,
    interval: timedelta,
    now: datetime,
    limits: SendLimits,
) -> datetime:
    """When the email may go: the k-th email waiting goes when the k-th oldest send of the
    window (`aged_out`, sent then) ages out, spaced beyond the sends the window holds."""
    reopen = (aged_out or now) + limits.window
    return reopen + max(0, position.offset - (position.sent - 1)) * interval


def cap_detail(slot: MailboxSlot, reopen: datetime, now: datetime) -> str:
    """Say why and until when an email waits for the daily cap."""
    return (
        f"Gmail daily cap reached ({slot.daily_send_cap} emails in 24 h from"
        f" {slot.email}), sending at {describe_time(reopen, now)}"
    )


# --- spacing and one send at a time -------------------------------------------------------


def spaced_send_at(
    slot: MailboxSlot, *, now: datetime, ahead: int, limits: SendLimits
) -> datetime | None:
    """None when the mailbox may send now; else when, after its spacing and a send in flight.

    `ahead` emails of the same mailbox deferred before this one in the round go first.
    """
    busy = slot.sending_until is not None and slot.sending_until > now
    if not busy and not (slot.next_send_at is not None and slot.next_send_at > now):
        return None
    interval = slot.interval
    at = max(slot.next_send_at or now, now)
    if busy:
        # Another worker is sending from this mailbox right now.
        at = max(at, now + max(interval, limits.busy_retry))
    return at + ahead * interval


#: How the reason of an email waiting for its disconnected mailbox begins.
WAITING_FOR_MAILBOX: Final = "On hold: Gmail is not connected"


def disconnected_wait_detail(email: str) -> str:
    """Say why a newsletter email waits: its mailbox was disconnected after the planning."""
    return (
        f"{WAITING_FOR_MAILBOX} for {email} any more; reconnect it from Salesbot's App Home"
        " and its emails go out, or cancel the issue's sending"
    )


def spacing_detail(slot: MailboxSlot, at: datetime, now: datetime) -> str:
    """Say why and until when an email waits behind others of its mailbox."""
    return f"Queued behind other emails from {slot.email}, sending at {describe_time(at, now)}"


# --- backoff after Gmail refused to carry out a send for now ------------------------------


def backoff_seconds(
    failure: MailboxError, *, attempt: int, limits: SendLimits, jitter: float
) -> float:
    """Seconds to wait after a rate limit: Retry-After at least, jittered backoff.

    `attempt` counts from 1; `jitter` is a random number in [0, 1).
    """
    retry_after = failure.retry_after or 0.0
    if failure.kind == FailureKind.QUOTA:
        return max(retry_after, limits.quota_pause.total_seconds())
    backoff = limits.backoff_base_seconds * 2.0 ** (attempt - 1)
    floor = max(retry_after, backoff)
    jittered = floor * (1.0 + 0.25 * jitter)
    return min(jittered, max(limits.max_backoff.total_seconds(), retry_after))


def retries_inline(wait: float, *, attempt: int, inline: bool, limits: SendLimits) -> bool:
    """True when a send made for a waiting caller sleeps and retries instead of queueing."""
    return (
        inline and wait <= limits.max_inline_wait_seconds and attempt < limits.max_inline_attempts
    )


def backoff_detail(
    failure: MailboxError, *, from_email: str | None, resume: datetime, now: datetime
) -> str:
    """Say why a send waits and when it is tried again."""
    when = describe_time(resume, now)
    if failure.kind == FailureKind.QUOTA:
        return f"Gmail says {from_email} reached its sending limit; retrying at {when}"
    if failure.kind == FailureKind.RATE_LIMITED:
        return f"Gmail asked us to slow down; retrying at {when}"
    return f"Gmail could not be reached; retrying at {when}"
