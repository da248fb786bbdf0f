"""The card state machine: every legal move, and every other move refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.cards import (
    OPEN_STATES,
    UNDECIDED_STATES,
    Card,
    CardState,
    CardType,
    Priority,
    can_transition,
    describe_refusal,
    states_that_can_become,
    transition,
)
from domain.errors import InvalidTransition

S = CardState
AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

LEGAL = {
    (S.SUGGESTED, S.IN_REVIEW),
    (S.SUGGESTED, S.APPROVED),
    (S.SUGGESTED, S.REJECTED),
    (S.SUGGESTED, S.BLOCKED),
    (S.SUGGESTED, S.WITHDRAWN),
    (S.IN_REVIEW, S.IN_REVIEW),
    (S.IN_REVIEW, S.APPROVED),
    (S.IN_REVIEW, S.REJECTED),
    (S.IN_REVIEW, S.BLOCKED),
    (S.IN_REVIEW, S.WITHDRAWN),
    (S.APPROVED, S.EXECUTING),
    (S.APPROVED, S.BLOCKED),
    (S.APPROVED, S.WITHDRAWN),
    (S.EXECUTING, S.DONE),
    (S.EXECUTING, S.BLOCKED),
    (S.BLOCKED, S.APPROVED),
    (S.BLOCKED, S.IN_REVIEW),
    (S.BLOCKED, S.REJECTED),
    (S.BLOCKED, S.WITHDRAWN),
}
ILLEGAL = sorted({(a, b) for a in S for b in S} - LEGAL)


def card(state: CardState, **changes: object) -> Card:
    values: dict[str, object] = {
        "id": 7,
        "org_id": 1,
        "type": CardType.SEND_EMAIL,
        "state": state,
        "priority": Priority.MEDIUM,
        "title": "Email Dana Whitfield",
        "created_at": AT,
        "updated_at": AT,
        "job_id": 12,
        **changes,
    }
    return Card(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("current", "to"), sorted(LEGAL))
def test_a_legal_move_changes_the_state_and_the_time(current: CardState, to: CardState) -> None:
    later = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    moved = transition(card(current), to, at=later)
    assert (moved.state, moved.updated_at) == (to, later)


@pytest.mark.parametrize(("current", "to"), ILLEGAL)
def test_any_other_move_is_refused(current: CardState, to: CardState) -> None:
    assert not can_transition(current, to)
    with pytest.raises(InvalidTransition):
        transition(card(current), to, at=AT)


def test_a_card_is_withdrawn_from_every_state_not_yet_sending() -> None:
    assert states_that_can_become(S.WITHDRAWN) == {S.SUGGESTED, S.IN_REVIEW, S.APPROVED, S.BLOCKED}


def test_a_card_being_sent_or_finished_cannot_be_withdrawn() -> None:
    for state in (S.EXECUTING, S.DONE, S.REJECTED, S.WITHDRAWN):
        with pytest.raises(InvalidTransition):
            transition(card(state), S.WITHDRAWN, at=AT)


def test_a_withdrawn_card_says_why_it_cannot_be_approved() -> None:
    withdrawn = card(S.WITHDRAWN, withdrawn_reason="job #12 cancelled")
    assert describe_refusal(withdrawn, S.APPROVED) == (
        "This card was withdrawn (job #12 cancelled); it can no longer be acted on."
    )
    with pytest.raises(InvalidTransition, match="withdrawn \\(job #12 cancelled\\)"):
        transition(withdrawn, S.APPROVED, at=AT)


def test_a_job_waits_for_cards_in_review_or_on_their_way_only() -> None:
    assert UNDECIDED_STATES == {S.SUGGESTED, S.IN_REVIEW, S.APPROVED, S.EXECUTING}


def test_a_card_waits_for_a_human_in_the_states_a_human_may_decide_it_from() -> None:
    assert OPEN_STATES == {S.SUGGESTED, S.IN_REVIEW, S.BLOCKED}


@pytest.mark.parametrize("to", list(S))
def test_a_compare_and_set_expects_exactly_the_states_the_table_moves_from(to: CardState) -> None:
    assert states_that_can_become(to) == {current for current, target in LEGAL if target == to}


def test_a_compare_and_set_narrowed_to_one_state_must_be_a_legal_move() -> None:
    assert states_that_can_become(S.BLOCKED, among=[S.EXECUTING]) == {S.EXECUTING}
    with pytest.raises(InvalidTransition):
        states_that_can_become(S.APPROVED, among=[S.EXECUTING])
