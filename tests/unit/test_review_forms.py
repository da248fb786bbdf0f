"""The edit and reject forms open only for a card the state machine lets a reviewer move."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.cards import Card, CardState, CardType, Priority, review_refusal

AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def card_in(state: CardState) -> Card:
    return Card(
        id=1,
        org_id=1,
        type=CardType.SEND_EMAIL,
        state=state,
        priority=Priority.MEDIUM,
        title="Re-engage Dana Whitfield",
        created_at=AT,
        updated_at=AT,
    )


OPEN = [CardState.SUGGESTED, CardState.IN_REVIEW, CardState.BLOCKED]
DECIDED_OR_ON_ITS_WAY = [
    CardState.APPROVED,
    CardState.EXECUTING,
    CardState.DONE,
    CardState.REJECTED,
    CardState.WITHDRAWN,
]


@pytest.mark.parametrize("to", [CardState.IN_REVIEW, CardState.REJECTED])
@pytest.mark.parametrize("state", OPEN)
def test_a_card_waiting_for_review_or_blocked_can_be_edited_or_rejected(
    state: CardState, to: CardState
) -> None:
    assert review_refusal(card_in(state), to) is None


@pytest.mark.parametrize("to", [CardState.IN_REVIEW, CardState.REJECTED])
@pytest.mark.parametrize("state", DECIDED_OR_ON_ITS_WAY)
def test_a_card_on_its_way_or_decided_cannot_be_changed_and_the_form_says_why(
    state: CardState, to: CardState
) -> None:
    wanted = f"This card is already {state.value.replace('_', ' ')}; it cannot be changed."
    assert review_refusal(card_in(state), to) == wanted
