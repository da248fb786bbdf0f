"""What the deterministic detectors found in one inbound message, before any model reads it.

The detectors (`integrations/mail_signals`) answer one question per message: is it a bounce,
a spam complaint, an automatic answer (out-of-office, other auto-reply, challenge-response,
read receipt), a delivery report, or mail a person wrote; and, for the latter, is it an
unsubscribe request and does it come from one of our own reps. The answer is a `Detection`:
plain data the pipeline acts on (mark an address bounced, pause a contact until a date, opt a
contact out) without knowing how it was found. `notes` say what was doubtful or unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.classification import Category, Classification, Decider, Intent

MAX_NOTES: Final = 20
MAX_NOTE_CHARS: Final = 200


class MessageKind(StrEnum):
    """What kind of message the detectors took it for; ORDINARY means no detector fired."""

    ORDINARY = "ordinary"  # a person's message, as far as the detectors can tell
    BOUNCE = "bounce"  # a delivery failure or delay report (DSN or MTA text)
    DELIVERY_REPORT = "delivery_report"  # a DSN that reports success (delivered, relayed)
    COMPLAINT = "complaint"  # a feedback-loop spam complaint (ARF, or a provider's own format)
    OUT_OF_OFFICE = "out_of_office"
    AUTO_REPLY = "auto_reply"  # any other automatic answer ("no longer in use", "ticket #12")
    CHALLENGE_RESPONSE = "challenge_response"  # "confirm you are a person before I read this"
    READ_RECEIPT = "read_receipt"  # a message disposition notification (RFC 8098)


class BounceSeverity(StrEnum):
    """How bad one recipient's failure is."""

    HARD = "hard"  # permanent (5.x.x): the address or its domain refuses the mail
    SOFT = "soft"  # transient (4.x.x): given up for now (mailbox full, retries expired)
    DELAYED = "delayed"  # a warning: the mail is still being retried, nothing failed yet


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FailedRecipient(_Frozen):
    """One recipient a bounce reports, with how bad the failure is and why."""

    address: str = Field(max_length=320)
    severity: BounceSeverity
    # Enhanced status code (RFC 3463), e.g. "5.1.1", when the bounce states or implies one.
    status: str | None = Field(default=None, max_length=16)
    # The SMTP reply code ("550") when one was found.
    smtp_code: str | None = Field(default=None, max_length=3)
    diagnostic: str | None = Field(default=None, max_length=500)
    # Which rule found the address: "dsn", "x-failed-recipients", "flufl.bounce", "text", ...
    found_by: str = Field(max_length=40)


class Bounce(_Frozen):
    """A delivery failure (or delay) report about a message we sent."""

    recipients: tuple[FailedRecipient, ...] = ()
    # Message-ID of our message as the bounce carries it (attached copy or its headers),
    # the surest way to link the bounce to our send.
    original_message_id: str | None = Field(default=None, max_length=998)

    @property
    def is_hard(self) -> bool:
        """Tell whether any recipient failed permanently."""
        return any(r.severity is BounceSeverity.HARD for r in self.recipients)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Return the failed recipients' addresses."""
        return tuple(r.address for r in self.recipients)


class Complaint(_Frozen):
    """A recipient reported our message as spam through their provider's feedback loop."""

    # ARF Feedback-Type ("abuse", "fraud", "not-spam", ...); None for non-ARF formats.
    feedback_type: str | None = Field(default=None, max_length=64)
    original_message_id: str | None = Field(default=None, max_length=998)
    # The complaining addresses as the report names them (Original-Rcpt-To, or the To of
    # the attached copy); one report may speak for several recipients.
    recipients: tuple[str, ...] = Field(default=(), max_length=100)
    report_format: str = Field(default="arf", max_length=16)  # "arf" or "provider"


class AutoReply(_Frozen):
    """An automatic answer: which signals gave it away and, for out-of-office, until when."""

    out_of_office: bool = False
    # The last day of the absence (or the day of return) as the message states it; None when
    # it states none or the date could not be read.
    return_date: date | None = None
    # The headers and phrases that matched, for people reading the result.
    signals: tuple[str, ...] = Field(default=(), max_length=20)


class UnsubscribeVia(StrEnum):
    """How an unsubscribe request reached us."""

    ADDRESS = "address"  # sent to the mailto: address of our List-Unsubscribe header
    TEXT = "text"  # the new text of the message asks for it


class UnsubscribeRequest(_Frozen):
    """A person asking to receive no more mail from us."""

    via: UnsubscribeVia
    # The opaque token of our List-Unsubscribe address (None for a request in words).
    token: str | None = Field(default=None, max_length=200)
    # The words that asked, as written (at most a line), for people reading the result.
    phrase: str | None = Field(default=None, max_length=200)


class DetectionContext(_Frozen):
    """What the detectors need to know about us: our reps and our unsubscribe mailboxes."""

    # Our reps' addresses, compared without regard to case.
    rep_addresses: frozenset[str] = frozenset()
    # Mailboxes whose `+unsub-<token>` plus-addresses we put in List-Unsubscribe headers
    # (see domain/unsubscribe_address.py); a rep's own mailbox may be one of them.
    unsubscribe_mailboxes: frozenset[str] = frozenset()

    @field_validator("rep_addresses", "unsubscribe_mailboxes")
    @classmethod
    def _lowercase(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(a.strip().lower() for a in value if a.strip())

    def is_rep(self, address: str | None) -> bool:
        """Tell whether the address is one of our reps'."""
        return address is not None and address.strip().lower() in self.rep_addresses


class Detection(_Frozen):
    """Everything the deterministic detectors found in one message."""

    kind: MessageKind = MessageKind.ORDINARY
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    auto_reply: AutoReply | None = None
    unsubscribe: UnsubscribeRequest | None = None
    # The sender is one of our reps (their own mail, a forward, a test).
    from_own_rep: bool = False
    # What was doubtful or unreadable (never message content).
    notes: tuple[str, ...] = Field(default=(), max_length=MAX_NOTES)

    @property
    def is_automatic(self) -> bool:
        """Tell whether a machine, not a person, wrote the message."""
        return self.kind is not MessageKind.ORDINARY

    def classification(self) -> Classification | None:
        """Return the classification the detectors settle on their own, or None to go on.

        Bounces, complaints and automatic answers need no model; neither does an unsubscribe
        request. Anything else (a person's message) goes on to the rules and the models.
        """
        if self.unsubscribe is not None:
            return _decided(
                Category.REMOVE, Intent.UNSUBSCRIBE, f"unsubscribe_{self.unsubscribe.via}"
            )
        if self.kind is MessageKind.ORDINARY:
            return None
        if self.kind is MessageKind.COMPLAINT:
            # A spam complaint opts the contact out exactly like a request to be removed.
            return _decided(Category.REMOVE, Intent.UNSUBSCRIBE, "complaint")
        intent = Intent.OUT_OF_OFFICE if self.kind is MessageKind.OUT_OF_OFFICE else Intent.NONE
        return _decided(Category.NOTIFICATIONS, intent, self.kind.value)


def _decided(category: Category, intent: Intent, detail: str) -> Classification:
    return Classification(
        category=category,
        confidence=1.0,
        intent=intent,
        decided_by=Decider.DETECTOR,
        decided_detail=detail,
    )


def clip_notes(notes: Iterable[str]) -> tuple[str, ...]:
    """Return notes without repeats, each and all cut to what a Detection keeps."""
    kept: list[str] = []
    for note in notes:
        short = note[:MAX_NOTE_CHARS]
        if short not in kept:
            kept.append(short)
        if len(kept) == MAX_NOTES:
            break
    return tuple(kept)
