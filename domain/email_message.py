"""An inbound email as parsed from Gmail: kept headers, decoded bodies, the new reply text.

The parser (`integrations/gmail/mime.py`) never rejects a message: what it could not read
is recorded as flags and short `defects` notes, so the message is stored and a person can
see why it looks odd. Message-IDs keep their angle brackets (`<id@host>`), the form they
have in Message-ID, In-Reply-To and References headers, so they compare as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Headers kept verbatim (decoded) in `ParsedEmail.headers`, under these spellings.
KEPT_HEADERS: Final[tuple[str, ...]] = (
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "Precedence",
    "X-Auto-Response-Suppress",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Return-Path",
    "Content-Type",
    "X-Failed-Recipients",
    # The top one, written by the receiving mailbox's provider (domain.mail_auth).
    "Authentication-Results",
)

# Fields of a message/delivery-status part (RFC 3464) copied into `ParsedEmail.headers`
# (from the first recipient block that has them).
DSN_FIELDS: Final[tuple[str, ...]] = (
    "Reporting-MTA",
    "Final-Recipient",
    "Original-Recipient",
    "Action",
    "Status",
    "Diagnostic-Code",
    "Remote-MTA",
)


# Fields of an ARF complaint (message/feedback-report, RFC 5965) or a read receipt
# (message/disposition-notification, RFC 8098) copied into `ParsedEmail.headers`.
REPORT_FIELDS: Final[tuple[str, ...]] = (
    "Feedback-Type",
    "Original-Mail-From",
    "Original-Rcpt-To",
    "Original-Message-ID",
    "Disposition",
)


class EmailFlag(StrEnum):
    """Something noteworthy about how a message was parsed."""

    TRUNCATED = "truncated"
    MALFORMED_MIME = "malformed_mime"
    MALFORMED_HEADER = "malformed_header"
    UNKNOWN_CHARSET = "unknown_charset"
    DECODE_ERROR = "decode_error"
    HTML_ONLY = "html_only"
    HAS_ATTACHMENTS = "has_attachments"
    NESTED_MESSAGE = "nested_message"
    # HTML text a reader would not see (comments, display:none, white on white, 1px...) was
    # dropped when the HTML became text; a defect note says how many characters.
    HIDDEN_TEXT = "hidden_text"
    # ... and that hidden text read like instructions to a language model.
    HIDDEN_INSTRUCTIONS = "hidden_instructions"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("dates must be timezone-aware")
    return value.astimezone(UTC)


class Attachment(_Frozen):
    """An attachment as recorded: its name, type and size, never its content."""

    filename: str | None = None
    content_type: str
    size: int = Field(ge=0)
    # Set for Gmail "full" resources, where the content stays on Gmail's side.
    gmail_attachment_id: str | None = None


class EmbeddedMessage(_Frozen):
    """Headers of a message carried inside another one (a bounce's copy of what we sent)."""

    # "message/rfc822", "text/rfc822-headers", or "text/plain" for a copy found inline.
    source: str
    message_id: str | None = None
    from_email: str | None = None
    to: tuple[str, ...] = ()
    subject: str | None = None
    date: datetime | None = None

    @field_validator("date")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)


class DeliveryStatusRecipient(_Frozen):
    """One per-recipient block of a delivery status notification (RFC 3464)."""

    final_recipient: str | None = None
    original_recipient: str | None = None
    action: str | None = None
    # The bare code ("5.1.1"); the field as written stays in `ParsedEmail.headers["Status"]`.
    status: str | None = None
    diagnostic_code: str | None = None
    remote_mta: str | None = None

    @property
    def address(self) -> str | None:
        """Return the recipient address without its type (`rfc822; a@b` -> `a@b`)."""
        value = self.final_recipient or self.original_recipient
        if not value:
            return None
        return value.split(";", 1)[-1].strip().strip("<>") or None


class ParsedEmail(_Frozen):
    """An inbound email, decoded as far as it could be, with what went wrong flagged."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    subject: str = ""
    from_email: str | None = None
    from_name: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: str | None = None
    # The Date header, in UTC; None when missing or unreadable.
    date: datetime | None = None
    # The whole plain-text body: text/plain parts, or HTML turned into text where a part
    # has no plain alternative.
    text: str = ""
    html: str | None = None
    # The new text of a reply, without quoted history and signature.
    reply_text: str = ""
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, str] = Field(default_factory=dict)
    embedded_messages: tuple[EmbeddedMessage, ...] = ()
    delivery_status: tuple[DeliveryStatusRecipient, ...] = ()
    flags: frozenset[EmailFlag] = frozenset()
    # Short notes on what could not be read (never message content).
    defects: tuple[str, ...] = ()
    # Size of the message in bytes (Gmail's sizeEstimate for "full" resources).
    size: int = Field(default=0, ge=0)
    gmail_id: str | None = None
    gmail_thread_id: str | None = None
    label_ids: tuple[str, ...] = ()
    # Gmail's internalDate (when Gmail accepted the message), in UTC.
    internal_date: datetime | None = None

    @field_validator("date", "internal_date")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)

    def has_flag(self, flag: EmailFlag) -> bool:
        """Tell whether the parser raised this flag."""
        return flag in self.flags

    @property
    def original_message_ids(self) -> tuple[str, ...]:
        """Return the Message-IDs of embedded messages, the first place to link a bounce."""
        return tuple(m.message_id for m in self.embedded_messages if m.message_id)
