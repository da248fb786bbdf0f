"""Cards: the actions a human approves, edits or rejects, and their state machine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from domain.errors import InvalidTransition
from domain.mail import SendOutcome


class CardType(StrEnum):
    """What a card asks a human to do, as in the original system."""

    SEND_EMAIL = "send_email"
    SCHEDULE_CALL = "schedule_call"
    RESEARCH = "research"
    CREATE_TASK = "create_task"
    FOLLOW_UP = "follow_up"
    CREATE_DEAL = "create_deal"
    REPLY_TO_EMAIL = "reply_to_email"
    NEEDS_HUMAN_RESPONSE = "needs_human_response"
    # A cadence's LinkedIn step: the rep connects, comments or messages, then Done / Skip.
    LINKEDIN_TOUCH = "linkedin_touch"
    # Reputation (docs/reputation.md): a drafted answer to a public review, and a review
    # escalated to the account manager or legal.
    REVIEW_RESPONSE = "review_response"
    REVIEW_ESCALATION = "review_escalation"


class CardState(StrEnum):
    """Where a card is: suggested → in_review → approved → executing → done.

    `withdrawn`: the card was taken back before it was sent (its job was cancelled);
    like `done` and `rejected`, nothing more can happen to it.
    """

    SUGGESTED = "suggested"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    EXECUTING = "executing"
    DONE = "done"
    BLOCKED = "blocked"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Priority(StrEnum):
    """How urgent a card is."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Card types whose approval sends an email.
EMAIL_CARD_TYPES: Final = frozenset(
    {CardType.SEND_EMAIL, CardType.FOLLOW_UP, CardType.REPLY_TO_EMAIL}
)
# Card types that, made from an inbound message, answer it by email in its thread: a reply,
# and a meeting request's confirmation (a schedule_call card a job's task made is a call).
ANSWER_CARD_TYPES: Final = frozenset({CardType.REPLY_TO_EMAIL, CardType.SCHEDULE_CALL})


def sends_email(card_type: CardType, *, answers_inbound: bool) -> bool:
    """Tell whether approving a card of this type sends an email (`answers_inbound`: the
    card was made from an inbound message)."""
    return card_type in EMAIL_CARD_TYPES or (answers_inbound and card_type in ANSWER_CARD_TYPES)


# Every card not yet on its way can be withdrawn (its job cancelled): one waiting for
# review or for its message, one approved but not yet sending, one whose send failed.
# A card that is executing is left to finish: its email may already be out.
_ALLOWED: Final[dict[CardState, frozenset[CardState]]] = {
    CardState.SUGGESTED: frozenset(
        {
            CardState.IN_REVIEW,
            CardState.APPROVED,
            CardState.REJECTED,
            CardState.BLOCKED,
            CardState.WITHDRAWN,
        }
    ),
    CardState.IN_REVIEW: frozenset(
        {
            CardState.IN_REVIEW,
            CardState.APPROVED,
            CardState.REJECTED,
            CardState.BLOCKED,
            CardState.WITHDRAWN,
        }
    ),
    CardState.APPROVED: frozenset({CardState.EXECUTING, CardState.BLOCKED, CardState.WITHDRAWN}),
    CardState.EXECUTING: frozenset({CardState.DONE, CardState.BLOCKED}),
    # A blocked card can be retried (approved again), edited back into review, or dropped.
    CardState.BLOCKED: frozenset(
        {CardState.APPROVED, CardState.IN_REVIEW, CardState.REJECTED, CardState.WITHDRAWN}
    ),
    CardState.DONE: frozenset(),
    CardState.REJECTED: frozenset(),
    CardState.WITHDRAWN: frozenset(),
}


def states_that_can_become(
    to: CardState, *, among: Iterable[CardState] | None = None
) -> frozenset[CardState]:
    """The states from which the table allows a move to `to`: what a compare-and-set to
    `to` expects the card to be in.

    `among` narrows them to a move out of one step of a card's life (a send that failed
    while executing); each state named must be one the table allows.
    """
    sources = frozenset(state for state, targets in _ALLOWED.items() if to in targets)
    if among is None:
        return sources
    wanted = frozenset(among)
    if not wanted <= sources:
        names = ", ".join(sorted(state.value for state in wanted - sources))
        raise InvalidTransition(f"the state machine does not move a card from {names} to {to}")
    return wanted


# Cards waiting for a human's decision: the states from which a human may approve a card,
# edit it (back into review) or reject it.
OPEN_STATES: Final = (
    states_that_can_become(CardState.APPROVED)
    & states_that_can_become(CardState.IN_REVIEW)
    & states_that_can_become(CardState.REJECTED)
)
# Cards still waiting for something (a human's review, or their send): a job runs until
# none of its cards is in one of these. The others are decided: sent (done), rejected,
# withdrawn, or failed (blocked: the reason is on the card, and a human may still retry it).
UNDECIDED_STATES: Final = frozenset(
    {CardState.SUGGESTED, CardState.IN_REVIEW, CardState.APPROVED, CardState.EXECUTING}
)


@dataclass(frozen=True)
class Card:
    """A card as the domain sees it."""

    id: int
    org_id: int
    type: CardType
    state: CardState
    priority: Priority
    title: str
    created_at: datetime
    updated_at: datetime
    job_id: int | None = None
    task_id: int | None = None
    enrollment_id: int | None = None
    client_id: int | None = None
    contact_id: int | None = None
    description: str | None = None
    rationale: str | None = None
    action_payload: dict[str, Any] = field(default_factory=dict)
    draft_fingerprint: str | None = None
    approved_by: int | None = None
    approved_at: datetime | None = None
    executed_at: datetime | None = None
    blocked_reason: str | None = None
    rejected_reason: str | None = None
    withdrawn_reason: str | None = None
    slack_channel_id: str | None = None
    slack_message_ts: str | None = None
    #: The inbound message the card answers (reply cards), None for outreach cards.
    inbound_email_id: int | None = None
    #: While set, the card is snoozed: its message shows when it comes back, and the
    #: snooze sweep posts it again as a new message at that time.
    snoozed_until: datetime | None = None

    @property
    def answers_inbound(self) -> bool:
        """True when the card was made from an inbound message (its answer goes in its
        thread)."""
        return self.inbound_email_id is not None

    @property
    def sends_email(self) -> bool:
        """True when approving this card sends an email."""
        return sends_email(self.type, answers_inbound=self.answers_inbound)

    @property
    def is_open(self) -> bool:
        """True while a human can still act on the card."""
        return self.state in OPEN_STATES

    @property
    def answers_email(self) -> bool:
        """True for a card made from an inbound message (a reply card or a human's card)."""
        return self.inbound_email_id is not None or "reply_text" in self.action_payload

    @property
    def awaits_draft(self) -> bool:
        """True for an answer to an inbound message whose answer is not drafted yet (no
        recipient or body, or no fingerprint binding the draft): nothing to send."""
        if not (self.answers_inbound and self.sends_email):
            return False
        payload = self.action_payload
        return not (payload.get("to") and payload.get("body") and self.draft_fingerprint)

    @property
    def is_snoozed(self) -> bool:
        """True while an open card waits for its snooze to end."""
        return self.snoozed_until is not None and self.is_open


@dataclass(frozen=True)
class CardView:
    """Everything a chat message needs to show a card."""

    card: Card
    contact_name: str | None = None
    contact_email: str | None = None
    contact_title: str | None = None
    company_name: str | None = None
    campaign_name: str | None = None
    job_name: str | None = None
    step_number: int | None = None
    total_steps: int | None = None
    actor_slack_id: str | None = None
    owner_slack_id: str | None = None
    thread_emails: int = 0
    #: Who snoozed the card (`action_payload.snoozed_by`), while it is snoozed.
    snoozed_by_slack_id: str | None = None
    #: The contact's phone number (a call step's card shows it).
    contact_phone: str | None = None
    #: A rep's cadence step: the emails its cadence sent before it, and whether the contact
    #: replied since the job started (None: not a cadence step's card).
    emails_before: int | None = None
    replied: bool = False


@dataclass(frozen=True)
class InFlightCard:
    """A card the recovery sweep carries on, with its email's outcome when it was sent."""

    org_id: int
    card_id: int
    state: CardState
    sends_email: bool
    sent: SendOutcome | None


@dataclass(frozen=True)
class SnoozedCard:
    """A snoozed card the snooze sweep claimed: it is posted again, then its snooze ends.

    `claimed_until` is the lease the claim wrote in `snoozed_until`: the snooze is ended
    only while it still holds (a rep who snoozed it again meanwhile keeps their snooze),
    and a sweep that died leaves the card to be claimed again once the lease is over.
    """

    org_id: int
    card_id: int
    state: CardState
    claimed_until: datetime
    slack_channel_id: str | None
    slack_message_ts: str | None


def can_transition(current: CardState, to: CardState) -> bool:
    """Tell whether the state machine allows `current → to`."""
    return to in _ALLOWED[current]


def transition(card: Card, to: CardState, *, at: datetime, **changes: Any) -> Card:
    """Move a card to a new state, or raise InvalidTransition."""
    if not can_transition(card.state, to):
        raise InvalidTransition(describe_refusal(card, to))
    return replace(card, state=to, updated_at=at, **changes)


def describe_refusal(card: Card, to: CardState) -> str:
    """Say in a sentence why a card cannot move to `to`."""
    if card.state == CardState.DONE:
        return "This card is already done; nothing more can be done with it."
    if card.state == CardState.REJECTED:
        return "This card was rejected; it can no longer be acted on."
    if card.state == CardState.WITHDRAWN:
        why = f" ({card.withdrawn_reason})" if card.withdrawn_reason else ""
        return f"This card was withdrawn{why}; it can no longer be acted on."
    if card.state in (CardState.APPROVED, CardState.EXECUTING) and to == CardState.APPROVED:
        return "This card was already approved; it is being sent."
    current, wanted = card.state.value.replace("_", " "), to.value.replace("_", " ")
    return f"A card that is {current} cannot become {wanted}."


def draft_fingerprint(*, to: str, subject: str, body: str) -> str:
    """Hash of a draft as shown: approvals carry it so nobody approves text they did not see."""
    canonical = json.dumps({"to": to, "subject": subject, "body": body}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def review_refusal(card: Card, to: CardState) -> str | None:
    """Say why a reviewer can no longer move `card` to `to` (an edit: in review; a
    rejection: rejected), or None when the state machine allows it."""
    if can_transition(card.state, to):
        return None
    return f"This card is already {card.state.value.replace('_', ' ')}; it cannot be changed."
