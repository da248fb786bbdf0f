"""The decision table of reply cards: every category, and the flags that change the card."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.cards import CardState, CardType, Priority
from domain.classification import Category, Classification, Decider, Entities, Intent, Sentiment
from domain.detection import AutoReply, Detection, MessageKind
from domain.reply_cards import CardPlan, ReplyAction, ReplyFacts, plan_reply_card, reply_facts
from domain.reply_policy import NEVER_AUTO, ReplyPolicy

OFF = ReplyPolicy()
ON = ReplyPolicy(enabled=True)
KNOWN = ReplyFacts(known_contact=True)


def said(
    category: Category,
    confidence: float = 0.97,
    *,
    intent: Intent = Intent.NONE,
    decided_by: Decider = Decider.CLAUDE,
    **more: object,
) -> Classification:
    return Classification(
        category=category,
        confidence=confidence,
        intent=intent,
        decided_by=decided_by,
        **more,  # type: ignore[arg-type]
    )


def card(plan: CardPlan) -> tuple[CardType | None, CardState | None, bool]:
    return plan.card_type, plan.state, plan.auto_send


# What each category makes from a known contact, policy on, confidence 0.97, no intent.
BY_CATEGORY = {
    Category.AMC_ORDER: (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False),
    Category.CASE: (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False),
    Category.AP: (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False),
    Category.AR: (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False),
    Category.ESCALATE: (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False),
    Category.OPPORTUNITY: (CardType.REPLY_TO_EMAIL, CardState.IN_REVIEW, False),
    Category.STATUS: (CardType.REPLY_TO_EMAIL, CardState.APPROVED, True),
    Category.SCHEDULING: (CardType.REPLY_TO_EMAIL, CardState.APPROVED, True),
    Category.UPDATES: (CardType.CREATE_TASK, CardState.IN_REVIEW, False),
    Category.INFORMATION: (CardType.REPLY_TO_EMAIL, CardState.IN_REVIEW, False),
    Category.NOTIFICATIONS: (None, None, False),
    Category.REMOVE: (CardType.REPLY_TO_EMAIL, CardState.APPROVED, True),
}


def test_the_table_names_every_category() -> None:
    assert set(BY_CATEGORY) == set(Category)


@pytest.mark.parametrize("category", list(Category))
def test_each_category_makes_its_card_when_the_policy_is_on(category: Category) -> None:
    assert card(plan_reply_card(said(category), KNOWN, ON)) == BY_CATEGORY[category]


@pytest.mark.parametrize("category", list(Category))
def test_with_the_policy_off_nothing_is_auto_sent_and_an_opt_out_gets_no_card(
    category: Category,
) -> None:
    plan = plan_reply_card(said(category), KNOWN, OFF)

    assert plan.auto_send is False
    if category is Category.REMOVE:
        assert card(plan) == (None, None, False)
        assert plan.reason == "unsubscribe: opted out, no confirmation sent"
        assert plan.auto_reason == (
            "needs a person because the organization has not turned auto-replies on"
        )
    else:
        expected_type = BY_CATEGORY[category][0]
        assert plan.card_type == expected_type
        assert plan.state == (None if expected_type is None else CardState.IN_REVIEW)


@pytest.mark.parametrize("category", list(Category))
def test_an_injection_attempt_makes_a_high_human_card_whatever_else_holds(
    category: Category,
) -> None:
    plan = plan_reply_card(
        said(category, 1.0, injection_attempt=True),
        ReplyFacts(known_contact=True, message_kind=MessageKind.AUTO_REPLY),
        ON,
    )

    assert card(plan) == (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False)
    assert plan.priority is Priority.HIGH
    assert plan.auto_reason == "needs a person because the message tried to instruct the model"


@pytest.mark.parametrize("kind", [k for k in MessageKind if k is not MessageKind.ORDINARY])
def test_an_automatic_message_makes_no_card_unless_a_user_rule_filed_it(
    kind: MessageKind,
) -> None:
    facts = ReplyFacts(known_contact=True, message_kind=kind)

    quiet = plan_reply_card(said(Category.STATUS, 1.0, decided_by=Decider.DETECTOR), facts, ON)
    ruled = plan_reply_card(said(Category.AMC_ORDER, 1.0, decided_by=Decider.RULE), facts, ON)
    filed = plan_reply_card(said(Category.NOTIFICATIONS, 1.0, decided_by=Decider.RULE), facts, ON)

    assert card(quiet) == (None, None, False)
    assert quiet.reason == f"automatic message ({kind.value.replace('_', ' ')})"
    assert card(ruled) == (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False)
    assert card(filed) == (None, None, False)


def test_an_amc_order_is_for_a_person_with_the_reason_and_high_priority() -> None:
    plan = plan_reply_card(said(Category.AMC_ORDER, 1.0), KNOWN, ON)

    assert (plan.reason, plan.priority, plan.action) == (
        "AMC order: a person handles orders",
        Priority.HIGH,
        ReplyAction.HUMAN_RESPONSE,
    )
    assert plan.auto_reason.startswith("needs a person because AMC_ORDER always does")


@pytest.mark.parametrize("category", [Category.STATUS, Category.OPPORTUNITY, Category.REMOVE])
def test_below_the_organization_threshold_a_person_decides(category: Category) -> None:
    plan = plan_reply_card(said(category, 0.79), ReplyFacts(known_contact=True, threshold=0.8), ON)

    assert card(plan) == (CardType.NEEDS_HUMAN_RESPONSE, CardState.IN_REVIEW, False)
    assert plan.reason == (
        f"{category.value} at confidence 0.79, below the organization's 0.80: a person decides"
    )


def test_a_meeting_request_makes_a_call_card_never_auto_sent() -> None:
    plan = plan_reply_card(
        said(Category.SCHEDULING, 0.99, intent=Intent.MEETING_REQUEST), KNOWN, ON
    )

    assert card(plan) == (CardType.SCHEDULE_CALL, CardState.IN_REVIEW, False)
    assert (plan.action, plan.priority) == (ReplyAction.PROPOSE_TIMES, Priority.HIGH)


@pytest.mark.parametrize("intent", [Intent.REFERRAL, Intent.WRONG_PERSON])
def test_a_referral_makes_a_task_to_enroll_the_person_named(intent: Intent) -> None:
    plan = plan_reply_card(said(Category.INFORMATION, intent=intent), KNOWN, ON)

    assert card(plan) == (CardType.CREATE_TASK, CardState.IN_REVIEW, False)
    assert plan.action is ReplyAction.ENROLL_REFERRAL


def test_interest_from_a_stale_client_opens_a_deal_and_from_an_active_one_a_reply() -> None:
    interested = said(Category.OPPORTUNITY, intent=Intent.INTERESTED)

    stale = plan_reply_card(interested, ReplyFacts(known_contact=True, stale_client=True), ON)
    active = plan_reply_card(interested, KNOWN, ON)

    assert card(stale) == (CardType.CREATE_DEAL, CardState.IN_REVIEW, False)
    assert (stale.priority, stale.action) == (Priority.HIGH, ReplyAction.OPEN_DEAL)
    assert card(active) == (CardType.REPLY_TO_EMAIL, CardState.IN_REVIEW, False)
    assert active.priority is Priority.HIGH


def test_a_status_request_whose_order_was_not_found_is_a_task_to_look_it_up() -> None:
    plan = plan_reply_card(
        said(Category.STATUS, 0.99), ReplyFacts(known_contact=True, order_found=False), ON
    )

    assert card(plan) == (CardType.CREATE_TASK, CardState.IN_REVIEW, False)
    assert plan.action is ReplyAction.LOOK_UP_ORDER


def test_not_now_is_a_low_reply_that_pauses_the_contact() -> None:
    plan = plan_reply_card(said(Category.INFORMATION, intent=Intent.NOT_NOW), KNOWN, ON)

    assert (plan.card_type, plan.priority, plan.action) == (
        CardType.REPLY_TO_EMAIL,
        Priority.LOW,
        ReplyAction.PAUSE_CONTACT,
    )


def test_a_stranger_is_never_answered_automatically() -> None:
    stranger = ReplyFacts(known_contact=False)

    status = plan_reply_card(said(Category.STATUS, 0.99), stranger, ON)
    remove = plan_reply_card(said(Category.REMOVE, 1.0), stranger, ON)

    assert card(status) == (CardType.REPLY_TO_EMAIL, CardState.IN_REVIEW, False)
    assert status.auto_reason == "needs a person because the sender is not a known contact"
    assert card(remove) == (None, None, False)


def test_a_machine_filed_by_a_user_rule_gets_a_card_but_no_automatic_answer() -> None:
    plan = plan_reply_card(
        said(Category.STATUS, 1.0, decided_by=Decider.RULE),
        ReplyFacts(known_contact=True, message_kind=MessageKind.AUTO_REPLY),
        ON,
    )

    assert card(plan) == (CardType.REPLY_TO_EMAIL, CardState.IN_REVIEW, False)
    assert plan.auto_reason == "needs a person because a machine wrote the message"


def test_an_auto_confirmed_opt_out_says_why_it_was_sent() -> None:
    plan = plan_reply_card(said(Category.REMOVE, 1.0, intent=Intent.UNSUBSCRIBE), KNOWN, ON)

    assert (plan.action, plan.auto_reason) == (
        ReplyAction.CONFIRM_OPT_OUT,
        "auto-sent because REMOVE at 1.00 ≥ 0.95 and the organization allows it",
    )


def test_our_own_reps_notifications_and_out_of_office_make_no_card() -> None:
    assert not plan_reply_card(said(Category.STATUS), ReplyFacts(from_own_rep=True), ON).makes_card
    assert not plan_reply_card(said(Category.NOTIFICATIONS), KNOWN, ON).makes_card
    assert not plan_reply_card(
        said(Category.INFORMATION, intent=Intent.OUT_OF_OFFICE), KNOWN, ON
    ).makes_card


def test_a_rush_raises_any_card_to_high_and_a_negative_sender_lifts_a_low_one() -> None:
    rush = said(Category.AP, entities=Entities(urgency="rush"))
    sour = said(Category.INFORMATION, sentiment=Sentiment.NEGATIVE)

    assert plan_reply_card(rush, KNOWN, ON).priority is Priority.HIGH
    assert plan_reply_card(said(Category.AP), KNOWN, ON).priority is Priority.MEDIUM
    assert plan_reply_card(sour, KNOWN, ON).priority is Priority.MEDIUM


@given(
    category=st.sampled_from(list(Category)),
    intent=st.sampled_from(list(Intent)),
    confidence=st.floats(min_value=0.0, max_value=1.0),
    injection=st.booleans(),
    kind=st.sampled_from(list(MessageKind)),
    decided_by=st.sampled_from(list(Decider)),
    known=st.booleans(),
    stale=st.booleans(),
    order_found=st.booleans(),
    enabled=st.booleans(),
)
def test_a_plan_is_auto_sent_only_when_safe_and_its_state_follows(
    category: Category,
    intent: Intent,
    confidence: float,
    injection: bool,
    kind: MessageKind,
    decided_by: Decider,
    known: bool,
    stale: bool,
    order_found: bool,
    enabled: bool,
) -> None:
    c = said(
        category, confidence, intent=intent, decided_by=decided_by, injection_attempt=injection
    )
    facts = ReplyFacts(
        message_kind=kind, known_contact=known, stale_client=stale, order_found=order_found
    )

    plan = plan_reply_card(c, facts, ReplyPolicy(enabled=enabled))

    if plan.auto_send:
        assert enabled
        assert known
        assert not injection
        assert category not in NEVER_AUTO
        assert confidence >= 0.95
        assert (plan.card_type, plan.state) == (CardType.REPLY_TO_EMAIL, CardState.APPROVED)
        assert plan.auto_reason.startswith("auto-sent because ")
    elif plan.card_type is not None:
        assert plan.state is CardState.IN_REVIEW
    if injection or (category in NEVER_AUTO and plan.card_type is not None):
        assert plan.card_type is CardType.NEEDS_HUMAN_RESPONSE
    assert plan.reason


def test_the_facts_of_an_out_of_office_come_from_its_detection_and_make_no_card() -> None:
    detection = Detection(kind=MessageKind.OUT_OF_OFFICE, auto_reply=AutoReply(out_of_office=True))
    classification = detection.classification()
    assert classification is not None

    facts = reply_facts(detection, known_contact=True, threshold=0.8)
    plan = plan_reply_card(classification, facts, ON)

    assert facts == ReplyFacts(
        message_kind=MessageKind.OUT_OF_OFFICE, known_contact=True, threshold=0.8
    )
    assert card(plan) == (None, None, False)
    assert plan.reason == "automatic message (out of office)"
