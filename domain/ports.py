"""Ports: the small interfaces use cases need from storage and the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from domain.audience import AudienceCriteria, AudienceSize
from domain.campaigns import Campaign, CampaignFields
from domain.sending import (
    AccessTokenUpdate,
    MailboxSlot,
    MailMessage,
    MessageRef,
    OutboxEmail,
)
from domain.templates import EmailTemplate, EmailTemplateFields


class CampaignRepository(Protocol):
    """Campaigns of one organization."""

    def add(self, org_id: int, fields: CampaignFields, *, created_by: int | None) -> Campaign:
        """Store a new campaign."""
        ...

    def get(self, org_id: int, campaign_id: int) -> Campaign:
        """Return a campaign or raise NotFound."""
        ...

    def find_by_name(self, org_id: int, name: str) -> Campaign | None:
        """Return the campaign with this name (case-insensitive), if any."""
        ...

    def list(self, org_id: int, *, status: str | None, limit: int, offset: int) -> list[Campaign]:
        """Return campaigns, newest first."""
        ...

    def update(
        self, org_id: int, campaign_id: int, fields: CampaignFields, *, now: datetime
    ) -> Campaign:
        """Replace a campaign's fields."""
        ...


class TemplateRepository(Protocol):
    """Email templates of one organization."""

    def add(
        self,
        org_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        created_by: int | None,
    ) -> EmailTemplate:
        """Store a new template."""
        ...

    def get(self, org_id: int, template_id: int) -> EmailTemplate:
        """Return a template or raise NotFound."""
        ...

    def list(self, org_id: int, *, category: str | None) -> list[EmailTemplate]:
        """Return templates by name."""
        ...

    def update(
        self,
        org_id: int,
        template_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        now: datetime,
    ) -> EmailTemplate:
        """Replace a template's fields."""
        ...

    def delete(self, org_id: int, template_id: int) -> None:
        """Delete a template or raise NotFound."""
        ...

    def existing_ids(self, org_id: int, ids: Sequence[int]) -> set[int]:
        """Return which of these template ids exist in the organization."""
        ...


class AudienceRepository(Protocol):
    """Counts and samples contacts matching a targeting, in one query."""

    def size(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime, sample_size: int
    ) -> AudienceSize:
        """Return how many contacts match and a sample of them."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the repositories; commits once."""

    campaigns: CampaignRepository
    templates: TemplateRepository
    audience: AudienceRepository

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...


# --- outbox ---


class OutboxRepository(Protocol):
    """The outbox rows (`email_sends`) and the send slots of their mailboxes.

    Rows are claimed and finished by compare-and-set: a method that returns a bool says
    whether the row still was as expected (a `worker` argument: still claimed by it).
    """

    def add(
        self,
        org_id: int,
        *,
        card_id: int | None,
        message_id: str,
        not_before: datetime,
        **content: object,
    ) -> OutboxEmail | None:
        """Store a queued email; None if the card already has one (cards send once)."""
        ...

    def get(self, send_id: int) -> OutboxEmail:
        """Return an outbox row or raise NotFound."""
        ...

    def by_card(self, card_id: int) -> OutboxEmail | None:
        """Return the outbox row of a card, if it was ever asked to send."""
        ...

    def rearm_failed(self, send_id: int, *, not_before: datetime, **content: object) -> bool:
        """Queue a failed row again with new content (a card retried after a failure)."""
        ...

    def thread_message_ids(self, org_id: int, thread_id: str, *, limit: int = 20) -> list[str]:
        """Return the Message-IDs of a thread's messages we know of, oldest first."""
        ...

    def last_sent_thread(self, enrollment_id: int) -> str | None:
        """Return the Gmail thread of an enrollment's last sent email."""
        ...

    def recipient_block(self, org_id: int, to_email: str) -> str | None:
        """Say why an address may not be emailed (opted out, bounced), or None if it may."""
        ...

    def contact_id_for(self, org_id: int, to_email: str) -> int | None:
        """Return the contact with this address in the organization."""
        ...

    def sender_label(self, org_id: int, user_id: int | None) -> str:
        """Return how the sending user is named: their name, else their email."""
        ...

    def lock_queued(self, send_id: int) -> OutboxEmail | None:
        """Lock a queued row for claiming; None if it is not queued or another worker has it."""
        ...

    def due_queued(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        """Lock queued rows whose time has come, oldest due first."""
        ...

    def expired_leases(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        """Lock `sending` rows whose lease ran out (a crashed or unconfirmed attempt)."""
        ...

    def lock_mailbox(self, account_id: int, *, wait: bool) -> MailboxSlot | None:
        """Lock a mailbox's throttle row; without `wait`, None if another worker holds it."""
        ...

    def hold_mailbox(self, account_id: int, *, until: datetime) -> None:
        """Mark a send from the mailbox in flight until `until` (call with the row locked)."""
        ...

    def release_mailbox(self, account_id: int, *, held_until: datetime) -> bool:
        """End this send's hold of the mailbox; False if the hold had expired and moved on."""
        ...

    def push_next_send(self, account_id: int, at: datetime) -> None:
        """Make the mailbox's next send wait until `at` (never brings it earlier)."""
        ...

    def sends_since(self, account_id: int, since: datetime) -> int:
        """Count a mailbox's sends (made or in flight) since a moment."""
        ...

    def send_time_since(self, account_id: int, since: datetime, *, offset: int) -> datetime | None:
        """Return the time of the `offset`-th send (0 = oldest) of a mailbox since a moment."""
        ...

    def claim(
        self,
        send_id: int,
        *,
        worker: str,
        slot_at: datetime,
        lease_until: datetime,
        from_email: str,
    ) -> bool:
        """Take a queued row (or re-take one this worker holds) for an attempt now."""
        ...

    def extend_lease(self, send_id: int, *, worker: str, until: datetime) -> bool:
        """Renew this worker's lease of a row (reconciling it)."""
        ...

    def release_slot(self, send_id: int, *, worker: str) -> bool:
        """Give back the send slot of an attempt Gmail refused to carry out (rate limited)."""
        ...

    def forget_thread(self, send_id: int) -> None:
        """Send without a Gmail thread (the thread was deleted from the mailbox)."""
        ...

    def mark_sent(
        self,
        send_id: int,
        *,
        worker: str,
        gmail_message_id: str,
        gmail_thread_id: str,
        at: datetime,
    ) -> bool:
        """Record that Gmail accepted the message; False if the claim was lost meanwhile."""
        ...

    def requeue(
        self,
        send_id: int,
        *,
        not_before: datetime,
        reason: str,
        worker: str | None = None,
        keep_slot: bool = False,
    ) -> bool:
        """Put a row back in the queue: certainly not sent, to be tried at `not_before`."""
        ...

    def hold(self, send_id: int, *, worker: str, until: datetime, reason: str) -> bool:
        """Keep an unconfirmed attempt `sending` until `until`, when the mailbox is searched."""
        ...

    def mark_failed(self, send_id: int, *, reason: str, worker: str | None = None) -> bool:
        """Record that the email was certainly not sent and will not be retried by itself."""
        ...

    def next_due_at(self) -> datetime | None:
        """Return when the outbox next has work: a queued row's time or a lease's end."""
        ...


class Mailbox(Protocol):
    """A rep's connected (or once connected) mailbox, without its tokens."""

    @property
    def id(self) -> int: ...

    @property
    def org_id(self) -> int: ...

    @property
    def user_id(self) -> int | None: ...

    @property
    def email(self) -> str: ...


class MailboxTokens(Protocol):
    """A mailbox's decrypted tokens (never logged)."""

    @property
    def refresh_token(self) -> str: ...

    @property
    def access_token(self) -> str | None: ...

    @property
    def access_token_expires_at(self) -> datetime | None: ...


class MailboxRepository(Protocol):
    """Reps' mailboxes and their tokens, as the outbox uses them."""

    def for_user(
        self, org_id: int, user_id: int, *, connected_only: bool = False
    ) -> Mailbox | None:
        """Return the user's mailbox: the connected one, else the one changed last."""
        ...

    def get(self, account_id: int) -> Mailbox:
        """Return a mailbox or raise NotFound."""
        ...

    def tokens(self, account_id: int) -> MailboxTokens | None:
        """Return a connected mailbox's tokens, or None once disconnected."""
        ...

    def save_access_token(
        self, account_id: int, *, access_token: str, expires_at: datetime | None, now: datetime
    ) -> None:
        """Keep a refreshed access token (only while the mailbox is connected)."""
        ...

    def mark_disconnected(self, account_id: int, *, reason: str, now: datetime) -> bool:
        """Forget a mailbox's tokens and say why; True if it was connected until now."""
        ...


class OutboxUnitOfWork(Protocol):
    """One transaction over the outbox and the mailboxes; commits once."""

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def mailboxes(self) -> MailboxRepository: ...

    def __enter__(self) -> OutboxUnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...


class MailboxConnection(Protocol):
    """One mailbox's mail API, for one unit of work (not shared between threads)."""

    def send(self, message: MailMessage, *, thread_id: str | None) -> MessageRef:
        """Send a message, never retried inside: a retried send could go out twice.

        Raise InvalidInput when the message cannot be composed (nothing was sent) and
        MailboxError when the call failed (its kind says whether it may have gone out).
        """
        ...

    def find_by_message_id(self, message_id: str) -> MessageRef | None:
        """Search the mailbox, Trash and Spam included, for our Message-ID; raise MailboxError."""
        ...

    def token_update(self) -> AccessTokenUpdate | None:
        """Return the access token refreshed during the calls, if it was, to be stored."""
        ...


class MailSender(Protocol):
    """Sends email from reps' own mailboxes (the Gmail API in production)."""

    def new_message_id(self) -> str:
        """Return a new, unique Message-ID of ours (`<...@our-domain>`)."""
        ...

    def check(self, message: MailMessage) -> None:
        """Raise InvalidInput if the message could not be composed; send nothing."""
        ...

    def connect(self, tokens: MailboxTokens) -> MailboxConnection:
        """Open a mailbox with its stored tokens (no call is made yet)."""
        ...
