"""What Salesbot understands of an inbound email: the shared vocabulary of every classifier.

Detectors, user rules, Claude and the offline model all answer in these terms, so the rest of
the inbound pipeline (linking, engagement, actions, cards) never cares which one decided.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from domain.email_message import EmailFlag

#: Below this confidence a category is not trusted and becomes ESCALATE (per-org setting).
DEFAULT_CONFIDENCE_THRESHOLD = 0.7

#: The reason a classifier gives when the message tried to instruct the model.
INJECTION_REASON = (
    "the message tried to instruct the model; a person must review it before anything is done"
)
#: The note a classifier records when the parser dropped hidden HTML text.
HIDDEN_TEXT_NOTE = "hidden HTML text was removed before classification"


class Category(StrEnum):
    """The twelve categories of the original system (seed §5)."""

    AMC_ORDER = "AMC_ORDER"  # an official appraisal order
    OPPORTUNITY = "OPPORTUNITY"  # a new business lead
    CASE = "CASE"  # complaint, dispute, rebuttal
    STATUS = "STATUS"  # a simple status request
    SCHEDULING = "SCHEDULING"  # appointment logistics
    UPDATES = "UPDATES"  # new or changed information
    AP = "AP"  # accounts payable
    AR = "AR"  # accounts receivable
    INFORMATION = "INFORMATION"  # announcements
    NOTIFICATIONS = "NOTIFICATIONS"  # system alerts
    REMOVE = "REMOVE"  # unsubscribe request
    ESCALATE = "ESCALATE"  # unsure: a human decides


class Sentiment(StrEnum):
    """How the sender feels about us, in three steps."""

    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class Intent(StrEnum):
    """What a reply to our outreach asks for."""

    INTERESTED = "interested"
    MEETING_REQUEST = "meeting_request"
    INFO_REQUEST = "info_request"
    NOT_NOW = "not_now"
    NOT_INTERESTED = "not_interested"
    WRONG_PERSON = "wrong_person"
    REFERRAL = "referral"
    UNSUBSCRIBE = "unsubscribe"
    OUT_OF_OFFICE = "out_of_office"
    NONE = "none"


class Decider(StrEnum):
    """Which part of the pipeline decided a classification."""

    DETECTOR = "detector"  # bounce, complaint, auto-reply, unsubscribe, own rep
    RULE = "rule"  # a user rule (confidence 1.0)
    CLAUDE = "claude"
    OFFLINE = "offline"  # the model shipped with Salesbot
    REP = "rep"  # a person re-labelled it (domain/corrections.py); decided_detail names them


class Entities(BaseModel):
    """Facts pulled out of a message (all optional, all as written in the message)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_numbers: list[str] = Field(default_factory=list, max_length=20)
    property_addresses: list[str] = Field(default_factory=list, max_length=20)
    amounts: list[str] = Field(default_factory=list, max_length=20)
    dates: list[str] = Field(default_factory=list, max_length=20)
    urgency: str | None = Field(default=None, max_length=32)


class Classification(BaseModel):
    """One decision about one message, whoever made it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Category
    confidence: float = Field(ge=0.0, le=1.0)
    sentiment: Sentiment = Sentiment.NEUTRAL
    sentiment_score: float = Field(default=0.0, ge=-1.0, le=1.0)
    intent: Intent = Intent.NONE
    entities: Entities = Field(default_factory=Entities)
    decided_by: Decider
    #: The rule id, detector name or model name that decided, for people reading the result.
    decided_detail: str | None = Field(default=None, max_length=200)
    #: True when the message tried to instruct the model; never lowers a review requirement.
    injection_attempt: bool = False
    #: Why the category was changed or escalated (low confidence, malformed model output...).
    reason: str | None = Field(default=None, max_length=500)
    #: What was done to the text before the decision (hidden text, zero-width characters
    #: removed, body truncated), for people reading the result; never message content.
    notes: tuple[str, ...] = Field(default=(), max_length=20)


class CorrectionExample(BaseModel):
    """A message of the organization that a rep re-labelled, shown to a model as an example.

    The text is the sender's (untrusted data, clipped); the labels are the rep's choice.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_email: str | None = Field(default=None, max_length=320)
    subject: str = Field(default="", max_length=1_000)
    body: str = Field(default="", max_length=4_000)
    category: Category
    intent: Intent
    sentiment: Sentiment


class ClassifyRequest(BaseModel):
    """What the inbound pipeline hands to a classifier (Claude or the offline model).

    `body` is the new text of the reply as stored (quoted history and signature already cut).
    `flags` are the parser's flags of the message (`domain.email_message.EmailFlag`): a
    classifier records HIDDEN_TEXT in its notes and treats HIDDEN_INSTRUCTIONS as an
    injection attempt, since the model never sees the hidden text it would have flagged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str
    body: str
    from_email: str | None = None
    from_name: str | None = None
    to: tuple[str, ...] = ()
    received_at: datetime | None = None
    #: A short line about what we sent them (our subject, the campaign name), or None.
    context: str | None = None
    flags: frozenset[EmailFlag] = frozenset()
    #: The organization's latest corrections by its reps (newest first, at most a few), for
    #: a model that learns from examples; a classifier that cannot use them ignores them.
    examples: tuple[CorrectionExample, ...] = Field(default=(), max_length=20)


def escalate_if_unsure(result: Classification, *, threshold: float) -> Classification:
    """Turn a category below the organization's confidence threshold into ESCALATE."""
    if result.category is Category.ESCALATE or result.confidence >= threshold:
        return result
    return result.model_copy(
        update={
            "category": Category.ESCALATE,
            "reason": (
                f"{result.category.value} at confidence {result.confidence:.2f} is below "
                f"the threshold {threshold:.2f}"
            ),
        }
    )
