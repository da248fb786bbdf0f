"""The auto-reply policy: its defaults, what it refuses, and the decision with its reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.classification import Category, Classification, Decider
from domain.clock import FixedClock
from domain.deps import Deps
from domain.errors import InvalidInput, NotPermitted
from domain.outreach import Actor
from domain.reply_policy import (
    AUTO_ALLOWED,
    DEFAULT_CATEGORIES,
    NEVER_AUTO,
    ReplyPolicies,
    ReplyPolicy,
    check_policy,
    may_auto_send,
)
from tests.unit.fakes import NOW, ORG, FakeUnitOfWork, World

ON = ReplyPolicy(enabled=True)
ADMIN = Actor(org_id=ORG, user_id=7, role="admin")
REP = Actor(org_id=ORG, user_id=8, role="rep")


def said(category: Category, confidence: float, *, injection: bool = False) -> Classification:
    return Classification(
        category=category,
        confidence=confidence,
        decided_by=Decider.CLAUDE,
        injection_attempt=injection,
    )


@pytest.fixture
def policies() -> tuple[ReplyPolicies, World]:
    world = World()
    clock = FixedClock(NOW)
    return ReplyPolicies(Deps(uow=lambda: FakeUnitOfWork(world, clock), clock=clock)), world


def test_the_default_policy_is_off_for_status_scheduling_and_remove_at_095() -> None:
    policy = ReplyPolicy()

    assert (policy.enabled, policy.categories, policy.min_confidence) == (
        False,
        frozenset({Category.STATUS, Category.SCHEDULING, Category.REMOVE}),
        0.95,
    )
    assert may_auto_send(policy, said(Category.STATUS, 0.99)) == (
        False,
        "needs a person because the organization has not turned auto-replies on",
    )


def test_a_status_reply_above_the_bound_is_auto_sent_with_its_reason() -> None:
    assert may_auto_send(ON, said(Category.STATUS, 0.97)) == (
        True,
        "auto-sent because STATUS at 0.97 ≥ 0.95 and the organization allows it",
    )
    assert may_auto_send(ON, said(Category.REMOVE, 0.95))[0] is True


def test_a_confidence_just_below_the_bound_is_shown_with_the_digits_that_tell_them_apart() -> None:
    assert may_auto_send(ON, said(Category.SCHEDULING, 0.949)) == (
        False,
        "needs a person because SCHEDULING at 0.949 is below 0.950",
    )
    assert may_auto_send(ON, said(Category.SCHEDULING, 0.9)) == (
        False,
        "needs a person because SCHEDULING at 0.90 is below 0.95",
    )


@pytest.mark.parametrize("category", sorted(NEVER_AUTO))
def test_amc_orders_cases_money_and_escalations_always_need_a_person(category: Category) -> None:
    allowed, reason = may_auto_send(ON, said(category, 1.0))

    assert allowed is False
    assert reason.startswith(f"needs a person because {category.value} always does: ")


def test_an_injection_attempt_needs_a_person_even_for_an_allowed_certain_category() -> None:
    assert may_auto_send(ON, said(Category.REMOVE, 1.0, injection=True)) == (
        False,
        "needs a person because the message tried to instruct the model",
    )


def test_a_category_the_organization_did_not_allow_needs_a_person() -> None:
    policy = ReplyPolicy(enabled=True, categories=frozenset({Category.REMOVE}))

    assert may_auto_send(policy, said(Category.STATUS, 0.99)) == (
        False,
        "needs a person because the organization does not auto-send STATUS replies",
    )


@pytest.mark.parametrize("category", sorted(NEVER_AUTO))
def test_a_forbidden_category_is_refused_with_the_reason(category: Category) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_policy(enabled=True, categories=["STATUS", category.value], min_confidence=0.95)

    assert refused.value.field == "categories"
    assert f"{category.value}: {NEVER_AUTO[category]}" in refused.value.message
    with pytest.raises(ValueError, match="can never be auto-sent"):
        ReplyPolicy(categories=frozenset({category}))


@pytest.mark.parametrize("bad", [0.49, 1.01, -1.0, float("nan"), float("inf")])
def test_a_confidence_out_of_bounds_is_refused(bad: float) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_policy(enabled=True, categories=[], min_confidence=bad)

    assert refused.value.field == "min_confidence"


def test_the_bounds_themselves_and_any_case_of_a_category_are_accepted() -> None:
    low = check_policy(enabled=True, categories=["status", " Remove "], min_confidence=0.5)
    high = check_policy(enabled=False, categories=[], min_confidence=1.0)

    assert (low.categories, low.min_confidence) == (
        frozenset({Category.STATUS, Category.REMOVE}),
        0.5,
    )
    assert (high.categories, high.min_confidence) == (frozenset(), 1.0)


@pytest.mark.parametrize("category", sorted(set(Category) - AUTO_ALLOWED - set(NEVER_AUTO)))
def test_only_status_scheduling_and_remove_may_be_auto_sent(category: Category) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_policy(enabled=True, categories=["STATUS", category.value], min_confidence=0.95)
    assert refused.value.field == "categories"
    assert refused.value.message == (
        f"{category.value} cannot be auto-sent: only REMOVE, SCHEDULING, STATUS may be, "
        "a person answers the rest"
    )
    with pytest.raises(ValueError, match="cannot be auto-sent"):
        ReplyPolicy(categories=frozenset({category}))
    assert may_auto_send(ON, said(category, 1.0)) == (
        False,
        f"needs a person because {category.value} replies are never auto-sent "
        "(only REMOVE, SCHEDULING, STATUS may be)",
    )


def test_a_refusal_names_both_kinds_of_category_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_policy(enabled=True, categories=["AP", "OPPORTUNITY"], min_confidence=0.95)
    assert refused.value.message.startswith("these categories can never be auto-sent (AP: ")
    assert "; OPPORTUNITY cannot be auto-sent: only REMOVE, SCHEDULING, STATUS" in (
        refused.value.message
    )


def test_an_unknown_category_is_refused_naming_the_ones_allowed() -> None:
    with pytest.raises(
        InvalidInput, match="unknown category 'BILLING'; use some of REMOVE, SCHEDULING, STATUS$"
    ) as e:
        check_policy(enabled=True, categories=["BILLING"], min_confidence=0.95)
    assert e.value.field == "categories"
    assert "AMC_ORDER" not in e.value.message


def test_the_policy_describes_itself_for_people() -> None:
    assert ReplyPolicy().describe().startswith("Auto-replies are off: every reply waits")
    assert ON.describe() == (
        "Auto-replies are on for REMOVE, SCHEDULING, STATUS at confidence ≥ 0.95; "
        "AMC_ORDER, CASE, AP, AR, ESCALATE always wait for a person."
    )


def test_an_admin_sets_the_policy_and_everyone_reads_it(
    policies: tuple[ReplyPolicies, World],
) -> None:
    service, world = policies
    assert service.get_policy(ORG) == ReplyPolicy()

    stored = service.set_policy(ADMIN, ORG, enabled=True, categories=["REMOVE"], min_confidence=0.9)

    assert (stored.enabled, stored.categories, stored.min_confidence) == (
        True,
        frozenset({Category.REMOVE}),
        0.9,
    )
    assert (stored.updated_by, stored.updated_at) == (ADMIN.user_id, NOW)
    assert service.get_policy(ORG) == stored
    assert service.get_policy(ORG + 1) == ReplyPolicy()
    assert world.reply_policies == {ORG: stored}


def test_a_rep_and_an_admin_of_another_organization_cannot_change_it(
    policies: tuple[ReplyPolicies, World],
) -> None:
    service, world = policies
    with pytest.raises(NotPermitted, match="Only an admin"):
        service.set_policy(REP, ORG, enabled=True)
    with pytest.raises(NotPermitted, match="your own organization"):
        service.set_policy(Actor(org_id=ORG + 1, user_id=9, role="admin"), ORG, enabled=True)
    assert world.reply_policies == {}


def test_an_organization_wide_token_may_change_it_and_a_refusal_stores_nothing(
    policies: tuple[ReplyPolicies, World],
) -> None:
    service, world = policies
    with pytest.raises(InvalidInput):
        service.set_policy(None, ORG, enabled=True, categories=["AMC_ORDER"])
    assert world.reply_policies == {}

    stored = service.set_policy(None, ORG, enabled=True)

    assert (stored.categories, stored.updated_by) == (DEFAULT_CATEGORIES, None)


@given(
    enabled=st.booleans(),
    categories=st.frozensets(st.sampled_from(sorted(AUTO_ALLOWED))),
    bound=st.floats(min_value=0.5, max_value=1.0),
    category=st.sampled_from(sorted(Category)),
    confidence=st.floats(min_value=0.0, max_value=1.0),
    injection=st.booleans(),
)
def test_a_reply_is_auto_sent_exactly_when_every_condition_holds(
    enabled: bool,
    categories: frozenset[Category],
    bound: float,
    category: Category,
    confidence: float,
    injection: bool,
) -> None:
    policy = ReplyPolicy(enabled=enabled, categories=categories, min_confidence=bound)

    allowed, reason = may_auto_send(policy, said(category, confidence, injection=injection))

    expected = (
        enabled
        and not injection
        and category in categories
        and category in AUTO_ALLOWED
        and confidence >= bound
    )
    assert allowed is expected
    assert reason.startswith("auto-sent because " if expected else "needs a person because ")
    if expected:
        assert reason.endswith("and the organization allows it")
