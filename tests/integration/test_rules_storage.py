"""The classification rules through the storage unit of work, on SQLite and PostgreSQL: the
`Rules` use cases on the real repository, and the repository's own queries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from domain.classification import Category
from domain.clock import FixedClock
from domain.deps import Deps
from domain.errors import NotFound
from domain.rules import Rules, RuleType
from integrations.regex_re2 import Re2Engine
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_org

SessionFactory = Callable[[], Session]


@pytest.fixture
def orgs(session: Session) -> tuple[int, int]:
    first, second = make_org(session, name="Lone Star Appraisals"), make_org(session, name="Rival")
    session.commit()
    return first.id, second.id


@pytest.fixture
def rules(session_factory: SessionFactory, clock: FixedClock) -> Rules:
    return Rules(Deps(uow=lambda: UnitOfWork(session_factory), clock=clock), regex=Re2Engine())


def add(rules: Rules, org_id: int, rule_type: str, pattern: str, **more: object) -> int:
    values: dict[str, object] = {"category": "STATUS", **more}
    return rules.add_rule(
        None,
        org_id,
        rule_type=rule_type,
        pattern=pattern,
        **values,  # type: ignore[arg-type]
    ).id


def test_the_repository_lists_counts_finds_changes_and_deletes_within_an_organization(
    rules: Rules, orgs: tuple[int, int], session_factory: SessionFactory
) -> None:
    org, other = orgs
    late = add(rules, org, "subject_regex", r"order #?\d+", priority=50)
    early = add(rules, org, "sender_domain", "pinnacle.com", priority=5)
    tie = add(rules, org, "subject_contains", "rush", priority=50, is_active=False)
    add(rules, other, "subject_regex", r"order #?\d+")

    with UnitOfWork(session_factory) as uow:
        repo = uow.classifier_rules
        assert [r.id for r in repo.list(org)] == [early, late, tie]
        assert [r.id for r in repo.list_active(org)] == [early, late]
        assert (repo.count(org), repo.count(org, rule_type=RuleType.SUBJECT_REGEX)) == (3, 1)
        assert repo.count(other) == 1
        found = repo.find(org, rule_type=RuleType.SENDER_DOMAIN, pattern="pinnacle.com")
        assert found is not None
        assert found.id == early
        assert repo.find(other, rule_type=RuleType.SENDER_DOMAIN, pattern="pinnacle.com") is None

        changed = repo.update(org, late, category=Category.AMC_ORDER, priority=None, is_active=None)
        assert (changed.category, changed.priority, changed.is_active) == (
            Category.AMC_ORDER,
            50,
            True,
        )
        with pytest.raises(NotFound, match=f"classification rule {late} not found"):
            repo.get(other, late)
        with pytest.raises(NotFound):
            repo.delete(other, late)
        repo.delete(org, late)
        assert [r.id for r in repo.list(org)] == [early, tie]
        # Not committed: the unit of work rolls the change and the delete back.
    with UnitOfWork(session_factory) as uow:
        assert uow.classifier_rules.get(org, late).category is Category.STATUS


def test_a_stored_rule_reads_back_as_it_was_added(
    rules: Rules, orgs: tuple[int, int], session: Session, clock: FixedClock
) -> None:
    org, _ = orgs
    rule_id = add(rules, org, "sender_email", " Orders@Pinnacle.COM ", category="escalate")

    row = session.get(m.ClassifierRule, rule_id)
    assert row is not None
    assert (row.rule_type, row.pattern, row.category, row.priority, row.is_active) == (
        "sender_email",
        "orders@pinnacle.com",
        "ESCALATE",
        100,
        True,
    )
    assert rules.get_rule(org, rule_id).created_at == clock.now()


def test_rules_classify_from_the_database_and_see_a_change_at_once(
    rules: Rules, orgs: tuple[int, int]
) -> None:
    org, other = orgs
    rule_id = add(rules, org, "sender_domain", "pinnacle.com", category="AMC_ORDER")

    found = rules.classify(org, sender_email="dana@mail.pinnacle.com", subject="New order")
    assert found is not None
    assert found.category is Category.AMC_ORDER
    assert rules.classify(other, sender_email="dana@pinnacle.com", subject="") is None

    rules.remove_rule(None, org, rule_id)
    assert rules.classify(org, sender_email="dana@pinnacle.com", subject="New order") is None
