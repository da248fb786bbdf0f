"""What a reply card's "View thread" and "Open contact" show: the conversation of its
Gmail thread, and the contact's engagement, status and open enrollments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from domain.engagement import EngagementHistory

#: How many messages of a thread are shown (the newest); a modal holds 100 blocks.
MAX_THREAD_MESSAGES: Final = 25
#: How much of one message is shown; the card's own message, whose start the card shows,
#: is shown at more length.
MAX_MESSAGE_CHARS: Final = 1_500
MAX_ANSWERED_CHARS: Final = 12_000
#: How many of a contact's latest engagement events are shown.
MAX_TIMELINE_EVENTS: Final = 20


@dataclass(frozen=True)
class ThreadMessage:
    """One message of a conversation: ours or theirs, its visible text only."""

    direction: Literal["us", "them"]
    at: datetime | None
    address: str | None  # who wrote (theirs) or whom we wrote to (ours)
    subject: str | None
    text: str  # quoted history cut; at most MAX_MESSAGE_CHARS (MAX_ANSWERED_CHARS answered)
    truncated: bool = False
    #: The message the card answers.
    answered: bool = False


@dataclass(frozen=True)
class CardThread:
    """The conversation a card belongs to, oldest first, the newest messages kept."""

    card_id: int
    gmail_thread_id: str | None
    messages: tuple[ThreadMessage, ...]
    #: Older messages left out (beyond MAX_THREAD_MESSAGES).
    left_out: int = 0


@dataclass(frozen=True)
class OpenEnrollment:
    """A campaign the contact is still in (active or paused)."""

    enrollment_id: int
    job_id: int
    job_name: str
    campaign_name: str | None
    step: int  # 0-based: the next step to send
    status: str
    next_due_at: datetime | None
    paused_until: datetime | None


@dataclass(frozen=True)
class ContactOverview:
    """A contact as "Open contact" shows them."""

    contact_id: int
    name: str
    email: str
    title: str | None
    company_name: str | None
    opted_out_at: datetime | None
    email_status: str  # valid, bounced, ...
    paused_until: datetime | None
    pause_reason: str | None
    #: The latest events (oldest first), the score decayed to now and its trend.
    history: EngagementHistory
    enrollments: tuple[OpenEnrollment, ...] = ()
    #: Events older than the ones shown.
    earlier_events: int = 0


def clip_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> tuple[str, bool]:
    """Cut a message's text to `limit` characters at a word; True when it was cut."""
    text = text.strip()
    if len(text) <= limit:
        return text, False
    cut = text[:limit].rsplit(None, 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip() + "…", True
