"""Cards: the actions a human approves, edits or rejects, and their state machine."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from domain.errors import InvalidTransition


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

OPEN_STATES: Final = frozenset({CardState.SUGGESTED, CardState.IN_REVIEW, CardState.BLOCKED})

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

    @property
    def sends_email(self) -> bool:
        """True when approving this card sends an email."""
        return self.type in EMAIL_CARD_TYPES

    @property
    def is_open(self) -> bool:
        """True while a human can still act on the card."""
        return self.state in OPEN_STATES


def can_transition(current: CardState, to: CardState) -> bool:
    """Tell whether the state machine allows `current → to`."""
    return to in _ALLOWED[current]


def states_that_can_become(to: CardState) -> frozenset[CardState]:
    """The states from which the state machine allows a move to `to` (for bulk moves)."""
    return frozenset(state for state, targets in _ALLOWED.items() if to in targets)


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
