"""Outgoing email as the domain asks for it, and what became of it (the Mailer port that
sends it is in domain/ports.py)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from domain.email_preferences import EmailType


class SendStatus(StrEnum):
    """What became of a send request."""

    SENT = "sent"
    QUEUED = "queued"  # waiting for the mailbox's cap or spacing; sent later by the outbox
    FAILED = "failed"


@dataclass(frozen=True)
class OutgoingEmail:
    """One email to send from a rep's mailbox.

    `card_id` makes the send idempotent: a card is sent at most once, whatever
    happens. `thread_id`, `in_reply_to` and `references` continue a conversation.
    """

    org_id: int
    to_email: str
    subject: str
    body_text: str
    sender_user_id: int | None = None
    to_name: str | None = None
    body_html: str | None = None
    card_id: int | None = None
    job_id: int | None = None
    campaign_id: int | None = None
    enrollment_id: int | None = None
    contact_id: int | None = None
    thread_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = field(default_factory=tuple)
    campaign_email: bool = True  # carries List-Unsubscribe and the footer link
    # What kind of email it is (domain/email_preferences.py): the send-time check refuses a
    # type the contact turned off, and the unsubscribe link acts on this type.
    email_type: EmailType | None = None


@dataclass(frozen=True)
class SendOutcome:
    """The result of a send: sent, queued for later (with when and why) or failed."""

    status: SendStatus
    email_send_id: int
    message_id: str
    gmail_message_id: str | None = None
    gmail_thread_id: str | None = None
    detail: str | None = None
    retry_at: datetime | None = None


_URL = re.compile(r"https?://[^\s<>\"')\]]+")


def text_to_html(text: str) -> str:
    """Render plain text as simple HTML: paragraphs, line breaks, links (all escaped)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    rendered = []
    for paragraph in paragraphs:
        escaped = html.escape(paragraph, quote=False)
        linked = _URL.sub(
            lambda m: f'<a href="{html.escape(m.group(0))}">{m.group(0)}</a>', escaped
        )
        rendered.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return "\n".join(rendered)
