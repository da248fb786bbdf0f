"""The repository of user classification rules (`classifier_rules`)."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from domain.classification import Category
from domain.rules import Rule, RuleType
from storage import models as m
from storage.sql import org_row


class ClassifierRuleRepo:
    """The classification rules of one organization; the unit of work commits."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @staticmethod
    def _ordered(query: Select[m.ClassifierRule]) -> Select[m.ClassifierRule]:
        return query.order_by(m.ClassifierRule.priority, m.ClassifierRule.id)

    @staticmethod
    def _to_domain(row: m.ClassifierRule) -> Rule:
        return Rule(
            id=row.id,
            org_id=row.org_id,
            rule_type=RuleType(row.rule_type),
            pattern=row.pattern,
            category=Category(row.category),
            priority=row.priority,
            is_active=row.is_active,
            created_by=row.created_by,
            created_at=row.created_at,
        )

    def _row(self, org_id: int, rule_id: int) -> m.ClassifierRule:
        return org_row(self._s, m.ClassifierRule, org_id, rule_id, what="classification rule")

    def list(self, org_id: int) -> builtins.list[Rule]:
        """Return every rule, by priority then id."""
        query = select(m.ClassifierRule).where(m.ClassifierRule.org_id == org_id)
        return [self._to_domain(r) for r in self._s.scalars(self._ordered(query))]

    def list_active(self, org_id: int) -> builtins.list[Rule]:
        """Return the active rules, by priority then id (the index on org_id, is_active)."""
        query = select(m.ClassifierRule).where(
            m.ClassifierRule.org_id == org_id, m.ClassifierRule.is_active.is_(True)
        )
        return [self._to_domain(r) for r in self._s.scalars(self._ordered(query))]

    def get(self, org_id: int, rule_id: int) -> Rule:
        """Return a rule or raise NotFound."""
        return self._to_domain(self._row(org_id, rule_id))

    def find(self, org_id: int, *, rule_type: RuleType, pattern: str) -> Rule | None:
        """Return the first rule with this type and (stored) pattern, if any."""
        query = select(m.ClassifierRule).where(
            m.ClassifierRule.org_id == org_id,
            m.ClassifierRule.rule_type == rule_type.value,
            m.ClassifierRule.pattern == pattern,
        )
        row = self._s.scalars(self._ordered(query).limit(1)).first()
        return self._to_domain(row) if row is not None else None

    def count(self, org_id: int, *, rule_type: RuleType | None = None) -> int:
        """Count the organization's rules (of one type, if given), active or not."""
        query = (
            select(func.count())
            .select_from(m.ClassifierRule)
            .where(m.ClassifierRule.org_id == org_id)
        )
        if rule_type is not None:
            query = query.where(m.ClassifierRule.rule_type == rule_type.value)
        return int(self._s.scalar(query) or 0)

    def add(
        self,
        org_id: int,
        *,
        rule_type: RuleType,
        pattern: str,
        category: Category,
        priority: int,
        is_active: bool,
        created_by: int | None,
        now: datetime,
    ) -> Rule:
        """Store a new rule."""
        row = m.ClassifierRule(
            org_id=org_id,
            rule_type=rule_type.value,
            pattern=pattern,
            category=category.value,
            priority=priority,
            is_active=is_active,
            created_by=created_by,
            created_at=now,
        )
        self._s.add(row)
        self._s.flush()
        return self._to_domain(row)

    def update(
        self,
        org_id: int,
        rule_id: int,
        *,
        category: Category | None,
        priority: int | None,
        is_active: bool | None,
    ) -> Rule:
        """Change the given fields of a rule (None keeps one); raise NotFound."""
        row = self._row(org_id, rule_id)
        if category is not None:
            row.category = category.value
        if priority is not None:
            row.priority = priority
        if is_active is not None:
            row.is_active = is_active
        self._s.flush()
        return self._to_domain(row)

    def delete(self, org_id: int, rule_id: int) -> None:
        """Delete a rule or raise NotFound."""
        self._s.delete(self._row(org_id, rule_id))
        self._s.flush()
