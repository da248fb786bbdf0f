"""Conversation linking: which of our sends an inbound message answers, and whose it is.

Links are tried in a fixed order, surest first, and the first that finds one of our sends
wins (seed §8.1, §10 "Conversation Linking Service"):

1. the Message-IDs of `In-Reply-To` and `References` → `email_sends.message_id`;
2. the Gmail thread → `email_sends.gmail_thread_id`;
3. for a bounce or a complaint, the Message-ID of our message as the report carries it
   (its attached copy, or the copied headers);
4. the sender (for a bounce or a complaint: the failed or complaining recipients) and our
   most recent send to that address within `RECENT_SEND_WINDOW`.

When no send matches, the message still gets a contact (by the sender's address) or, for a
stranger, a client whose domain is the sender's (or a parent of it). Everything is scoped to
the message's organization. A send, once found, is marked replied only by a person's reply
(`marks_send_replied`): a bounce, a complaint or an automatic answer is linked to the send
it reports on but is not a reply to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from domain.detection import Detection, MessageKind

if TYPE_CHECKING:
    from domain.ports import ConversationRepository

#: How far back a reply is matched to our last send to its sender, when no header links it.
RECENT_SEND_WINDOW: Final = timedelta(days=60)
#: Message-IDs of `References` looked up (a very long thread lists hundreds).
MAX_REFERENCES: Final = 50


class LinkedBy(StrEnum):
    """Which rule linked a message (the first that matched)."""

    IN_REPLY_TO = "in_reply_to"  # In-Reply-To or References named our Message-ID
    THREAD = "thread"  # same Gmail thread as one of our sends
    REPORTED_ORIGINAL = "reported_original"  # the bounce/complaint carries our Message-ID
    RECENT_SEND = "recent_send"  # our latest send to the sender (or failed recipient)
    CONTACT = "contact"  # no send: a contact with the sender's address
    CLIENT_DOMAIN = "client_domain"  # a stranger whose domain belongs to a client


@dataclass(frozen=True)
class SendRef:
    """One of our sends, as linking needs it."""

    id: int
    contact_id: int | None
    job_id: int | None
    campaign_id: int | None
    enrollment_id: int | None
    gmail_thread_id: str | None
    to_email: str
    sent_at: datetime | None


@dataclass(frozen=True)
class ContactRef:
    """A contact found by address, with its client."""

    id: int
    client_id: int | None


@dataclass(frozen=True)
class LinkQuery:
    """What linking reads of an inbound message."""

    org_id: int
    from_email: str | None
    gmail_thread_id: str | None
    in_reply_to: str | None
    references: Sequence[str]
    received_at: datetime | None


@dataclass(frozen=True)
class Link:
    """What a message was linked to; all None when nothing matched."""

    send: SendRef | None = None
    contact_id: int | None = None
    client_id: int | None = None
    linked_by: LinkedBy | None = None

    @property
    def linked(self) -> bool:
        """Tell whether anything (send, contact or client) was found."""
        return self.linked_by is not None


@dataclass(frozen=True)
class ConversationEntry:
    """One message of a conversation, sent or received, in the order they happened."""

    direction: str  # "sent" or "received"
    id: int  # email_sends.id or inbound_emails.id
    at: datetime | None
    subject: str | None
    address: str | None  # whom we wrote to, or who wrote
    sentiment: str | None = None
    category: str | None = None


def reported_addresses(detection: Detection | None) -> tuple[str, ...]:
    """Return the addresses a bounce or complaint reports on (empty for other messages)."""
    if detection is None:
        return ()
    if detection.bounce is not None:
        return detection.bounce.addresses
    if detection.complaint is not None:
        return detection.complaint.recipients
    return ()


def reported_message_id(detection: Detection | None) -> str | None:
    """Return the Message-ID of our message that a bounce or complaint carries."""
    if detection is None:
        return None
    if detection.bounce is not None and detection.bounce.original_message_id:
        return detection.bounce.original_message_id
    if detection.complaint is not None and detection.complaint.original_message_id:
        return detection.complaint.original_message_id
    return None


def marks_send_replied(detection: Detection | None) -> bool:
    """Tell whether a linked message counts as a reply to our send: a person wrote it.

    Bounces, complaints, automatic answers and mail from our own reps are linked but are
    not replies; neither is a bare request sent to our List-Unsubscribe address (a mail
    client sends it on a click). An unsubscribe request in a person's words is a reply.
    """
    if detection is None:
        return True
    if detection.from_own_rep or detection.kind is not MessageKind.ORDINARY:
        return False
    return detection.unsubscribe is None or detection.unsubscribe.via != "address"


def _parent_domains(address: str | None) -> list[str]:
    """Return the address's domain and its parents with at least two labels."""
    if not address or "@" not in address:
        return []
    labels = address.rsplit("@", 1)[1].strip().lower().rstrip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


@dataclass(frozen=True)
class LinkKeys:
    """Every key linking may look up for a set of messages, to fetch them in a few queries."""

    message_ids: frozenset[str]
    thread_ids: frozenset[str]
    addresses: frozenset[str]
    domains: frozenset[str]
    since: datetime


def link_keys(items: Sequence[tuple[LinkQuery, Detection | None]], *, now: datetime) -> LinkKeys:
    """Return what `link_message` may look up for these messages (one organization)."""
    message_ids: set[str] = set()
    threads: set[str] = set()
    addresses: set[str] = set()
    domains: set[str] = set()
    since = now
    for query, detection in items:
        message_ids.update(i for i in (query.in_reply_to, *query.references[:MAX_REFERENCES]) if i)
        original = reported_message_id(detection)
        if original:
            message_ids.add(original)
        if query.gmail_thread_id:
            threads.add(query.gmail_thread_id)
        reported = reported_addresses(detection)
        wanted = list(reported[:10]) if reported else [query.from_email] if query.from_email else []
        addresses.update(wanted)
        domains.update(d for a in wanted[:1] for d in _parent_domains(a))
        since = min(since, (query.received_at or now) - RECENT_SEND_WINDOW)
    return LinkKeys(
        frozenset(message_ids), frozenset(threads), frozenset(addresses), frozenset(domains), since
    )


def link_message(
    repo: ConversationRepository,
    query: LinkQuery,
    detection: Detection | None,
    *,
    now: datetime,
) -> Link:
    """Find the send a message answers (or its contact, or its client), surest rule first."""
    org = query.org_id
    ids = [i for i in (query.in_reply_to, *query.references[:MAX_REFERENCES]) if i]
    send: SendRef | None = None
    how: LinkedBy | None = None
    if ids:
        send, how = repo.send_by_message_ids(org, ids), LinkedBy.IN_REPLY_TO
    if send is None and query.gmail_thread_id:
        send, how = repo.send_by_thread(org, query.gmail_thread_id), LinkedBy.THREAD
    original = reported_message_id(detection)
    if send is None and original:
        send, how = repo.send_by_message_ids(org, [original]), LinkedBy.REPORTED_ORIGINAL
    reported = reported_addresses(detection)
    addresses = list(reported) if reported else [query.from_email] if query.from_email else []
    if send is None:
        since = (query.received_at or now) - RECENT_SEND_WINDOW
        for address in addresses[:10]:
            send = repo.latest_send_to(org, address, since=since)
            if send is not None:
                how = LinkedBy.RECENT_SEND
                break
    if send is not None:
        contact = (
            repo.contact(org, send.contact_id)
            if send.contact_id is not None
            else repo.contact_by_address(org, send.to_email)
        )
        return Link(
            send=send,
            contact_id=contact.id if contact else send.contact_id,
            client_id=contact.client_id if contact else None,
            linked_by=how,
        )
    for address in addresses[:10]:
        contact = repo.contact_by_address(org, address)
        if contact is not None:
            return Link(
                contact_id=contact.id, client_id=contact.client_id, linked_by=LinkedBy.CONTACT
            )
    # A stranger whose domain is a client's (or a subdomain of it): linked to the client.
    domains = [d for a in addresses[:1] for d in _parent_domains(a)]
    client_id = repo.client_by_domains(org, domains) if domains else None
    if client_id is not None:
        return Link(client_id=client_id, linked_by=LinkedBy.CLIENT_DOMAIN)
    return Link()
