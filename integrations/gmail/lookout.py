"""The last look before a cadence follow-up, in the sender's Gmail (domain/last_look.py).

`GmailLookout.look` reads, in the mailbox of the user who sends the campaign's emails:

- the enrollment's thread (`users.threads.get`, format minimal: ids, labels, dates), every
  message since the last send but the mailbox's own (SENT) ones: a reply from the contact
  or from a colleague they copied;
- a search for mail from the contact since the last send (`users.messages.list`,
  `q=from:<address> after:<epoch seconds>`): a reply that started a thread of its own.

A message found that Salesbot has not stored yet is stored exactly as the history sync
stores a message it lists (its id first, then fetched, parsed, run through the detectors
and saved by `GmailSync.fetch_messages`), so the inbound pipeline classifies, links and
acts on it as on a pushed message; the pipeline is woken (`on_stored`). The mailbox's
history pointer does not move: the look read a thread and a search, not its history.

Gmail failures raise ExternalServiceError: the caller lets the step run rather than hold
it on a look that did not happen. Only counts and Gmail ids are logged, never content.
"""

from __future__ import annotations

import http.client
import logging
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import httplib2
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from domain.clock import Clock
from domain.errors import ExternalServiceError
from domain.inbound import NewMessage, is_synced_message
from domain.last_look import LookResult, RecordedFinds, describe_look
from integrations.gmail.sync import FetchOutcome, GmailSync, describe_http_error

log = logging.getLogger(__name__)

#: The newest messages from the contact a search reads (one page): a contact who wrote more
#: than this since the last send has been heard from, whichever of them is missed.
SEARCH_LIMIT: Final = 50
#: A found message's row is the look's to fetch until then; past it, the retry job's.
FETCH_LEASE: Final = timedelta(minutes=10)
_OWN_LABELS: Final = frozenset({"SENT", "DRAFT"})
_TRANSPORT_ERRORS: Final = (
    OSError,
    socket.timeout,
    http.client.HTTPException,
    httplib2.HttpLib2Error,
    auth_exceptions.TransportError,
)


class FoundMessageStore(Protocol):
    """What the look needs from storage (storage/inbound.py: SqlInboundStore)."""

    def record_found(
        self, account_id: int, messages: Sequence[NewMessage], *, lease_until: datetime
    ) -> RecordedFinds:
        """Store found message ids without moving the history pointer; say which are new
        and how many of the others the pipeline has not read yet."""
        ...


class GmailLookout:
    """Looks for replies Salesbot missed in the sender's mailbox (the `ReplyLookout` port)."""

    def __init__(
        self,
        *,
        store: FoundMessageStore,
        sync: GmailSync,
        service_for_account: Callable[[int], Any],
        mailbox_for: Callable[[int, int], tuple[int, str] | None],
        clock: Clock,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._sync = sync
        self._service_for = service_for_account
        # (org id, user id) → (account id, address) of the user's connected mailbox.
        self._mailbox_for = mailbox_for
        self._clock = clock
        #: Called after the look stored messages for the pipeline (wakes its worker).
        self.on_stored = on_stored

    def look(
        self,
        org_id: int,
        *,
        sender_user_id: int | None,
        contact_email: str,
        thread_id: str | None,
        since: datetime | None,
    ) -> LookResult:
        """Read the thread and the contact's mail since `since` in the sender's mailbox;
        store what Salesbot has not stored yet; return the counts."""
        mailbox = self._mailbox_for(org_id, sender_user_id) if sender_user_id is not None else None
        if mailbox is None:
            # No mailbox of the sender is connected: the email cannot leave it either (the
            # send is blocked with its own reason), and there is nothing to look in.
            return LookResult(
                found=0, stored=0, description="no connected mailbox of the sender to look in"
            )
        account_id, address = mailbox
        found: dict[str, NewMessage] = {}
        try:
            service = self._service_for(account_id)
            if thread_id:
                self._read_thread(service, thread_id, since, found)
            if since is not None:
                self._search(service, contact_email, since, found)
        except HttpError as exc:
            raise _failure("last look", exc) from None
        except auth_exceptions.RefreshError:
            raise ExternalServiceError(
                "Google refused the mailbox's credentials (revoked or expired grant); "
                "reconnect Gmail",
                retryable=False,
            ) from None
        except _TRANSPORT_ERRORS as exc:
            raise ExternalServiceError(
                f"last look: Gmail could not be reached ({type(exc).__name__})", retryable=True
            ) from None
        try:
            stored, unread = self._store_found(account_id, list(found.values()))
        except LookupError:
            raise ExternalServiceError(
                "last look: the mailbox was disconnected and removed during the look",
                retryable=False,
            ) from None
        result = LookResult(
            found=len(found),
            stored=stored,
            unread=unread,
            description=describe_look(
                found=len(found),
                stored=stored,
                unread=unread,
                contact_email=contact_email,
                mailbox=address,
            ),
        )
        if found:
            log.info(
                "last look found messages",
                extra={
                    "org_id": org_id,
                    "account_id": account_id,
                    "thread_id": thread_id,
                    "gmail_ids": sorted(found),
                    "found": result.found,
                    "stored": result.stored,
                    "unread": result.unread,
                },
            )
        return result

    def _read_thread(
        self, service: Any, thread_id: str, since: datetime | None, found: dict[str, NewMessage]
    ) -> None:
        """Add the thread's messages since `since` that the mailbox did not send itself."""
        try:
            thread = (
                service.users()
                .threads()
                .get(userId="me", id=thread_id, format="minimal")
                .execute(num_retries=1)
            )
        except HttpError as exc:
            if exc.resp.status == 404:
                # The rep deleted the thread: the search below still finds the contact's mail.
                return
            raise
        edge = _epoch_ms(since) if since is not None else None
        for message in thread.get("messages") or ():
            gmail_id = message.get("id")
            labels = tuple(str(label) for label in message.get("labelIds") or ())
            if not gmail_id or _OWN_LABELS.intersection(labels) or not is_synced_message(labels):
                continue
            if edge is not None and int(message.get("internalDate") or 0) < edge:
                continue
            found.setdefault(
                gmail_id, NewMessage(gmail_id, message.get("threadId") or thread_id, labels)
            )

    def _search(
        self, service: Any, contact_email: str, since: datetime, found: dict[str, NewMessage]
    ) -> None:
        """Add the newest messages from the contact since `since` (one page)."""
        query = f"from:{contact_email} after:{int(since.timestamp())} -in:drafts -in:chats"
        page = (
            service.users()
            .messages()
            .list(userId="me", q=query, maxResults=SEARCH_LIMIT)
            .execute(num_retries=1)
        )
        for item in page.get("messages") or ():
            gmail_id = item.get("id")
            if gmail_id:
                found.setdefault(gmail_id, NewMessage(gmail_id, item.get("threadId")))

    def _store_found(self, account_id: int, messages: list[NewMessage]) -> tuple[int, int]:
        """Store and fetch the messages new to Salesbot; return (stored, unread)."""
        if not messages:
            return 0, 0
        now = self._clock.now()
        recorded = self._store.record_found(account_id, messages, lease_until=now + FETCH_LEASE)
        outcome = (
            self._sync.fetch_messages(account_id, recorded.to_fetch)
            if recorded.to_fetch
            else FetchOutcome()
        )
        if outcome.parsed and self.on_stored is not None:
            self.on_stored()
        # A message Gmail deleted before it was fetched is nothing to wait for; one whose
        # fetch failed is kept with its error and fetched again by the retry job.
        return len(recorded.to_fetch) - outcome.gone, recorded.unread


def _epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _failure(operation: str, exc: HttpError) -> ExternalServiceError:
    status = int(exc.resp.status)
    return ExternalServiceError(
        describe_http_error(operation, exc), retryable=status == 429 or status >= 500
    )
