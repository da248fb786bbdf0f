"""The ports of reputation (docs/reputation.md): its repositories and unit of work.

Kept beside the concept rather than in `domain/ports.py` while the feature settles; the
unit of work extends the card and job repositories the outreach ports already name.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from domain.ports import OutreachUnitOfWork
from domain.reputation import (
    EscalationKind,
    EscalationRule,
    Platform,
    ReputationSettings,
    ReputationTotals,
    ReputationTrends,
    ResponseTemplate,
    Review,
    ReviewStatus,
    RouteTo,
    Scenario,
)


class ReviewRepository(Protocol):
    """Stored reviews and the queries of their trends."""

    def existing(self, org_id: int, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Return which (platform, external id) pairs are stored already."""
        ...

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> builtins.list[int]:
        """Insert reviews (column values); return their ids in order."""
        ...

    def get(self, org_id: int, review_id: int) -> Review:
        """Return a review or raise NotFound."""
        ...

    def by_card(self, org_id: int, card_id: int) -> Review | None:
        """Return the review whose response or escalation card this is."""
        ...

    def list(
        self,
        org_id: int,
        *,
        platform: Platform | None = None,
        status: ReviewStatus | None = None,
        escalated: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Review]:
        """Return reviews, newest received first."""
        ...

    def update(self, org_id: int, review_id: int, **values: Any) -> None:
        """Change columns of a review."""
        ...

    def totals(self, org_id: int, since: datetime, until: datetime) -> ReputationTotals:
        """The totals of reviews received in [since, until)."""
        ...

    def trends(self, org_id: int, since: datetime, until: datetime) -> ReputationTrends:
        """The days and totals of reviews received in [since, until)."""
        ...


class ResponseTemplateRepository(Protocol):
    """The response templates of an organization."""

    def list(self, org_id: int) -> builtins.list[ResponseTemplate]:
        """Return every template, by id."""
        ...

    def get(self, org_id: int, template_id: int) -> ResponseTemplate:
        """Return a template or raise NotFound."""
        ...

    def add(
        self,
        org_id: int,
        *,
        scenario: Scenario,
        name: str,
        body: str,
        is_active: bool,
        now: datetime,
    ) -> ResponseTemplate:
        """Store a new template."""
        ...

    def update(self, org_id: int, template_id: int, *, now: datetime, **values: Any) -> None:
        """Change a template's columns."""
        ...

    def remove(self, org_id: int, template_id: int) -> None:
        """Delete a template or raise NotFound."""
        ...


class EscalationRuleRepository(Protocol):
    """The escalation rules of an organization."""

    def list(self, org_id: int) -> builtins.list[EscalationRule]:
        """Return every rule, by id."""
        ...

    def get(self, org_id: int, rule_id: int) -> EscalationRule:
        """Return a rule or raise NotFound."""
        ...

    def add(
        self,
        org_id: int,
        *,
        kind: EscalationKind,
        pattern: str,
        route_to: RouteTo,
        user_id: int | None,
        is_active: bool,
    ) -> EscalationRule:
        """Store a new rule."""
        ...

    def update(self, org_id: int, rule_id: int, **values: Any) -> None:
        """Change a rule's columns."""
        ...

    def remove(self, org_id: int, rule_id: int) -> None:
        """Delete a rule or raise NotFound."""
        ...


class ReputationSettingsRepository(Protocol):
    """Per-organization reputation settings and the encrypted webhook secret."""

    def get(self, org_id: int) -> ReputationSettings:
        """Return the settings (defaults when none are stored)."""
        ...

    def save(self, org_id: int, **values: Any) -> None:
        """Store settings columns (creating the row on first use)."""
        ...

    def webhook_secret(self, org_id: int) -> bytes | None:
        """Return the encrypted webhook secret, if one is set."""
        ...

    def org_id_by_slug(self, slug: str) -> int | None:
        """Return the id of the organization with this slug."""
        ...


class ReputationUnitOfWork(OutreachUnitOfWork, Protocol):
    """What the reputation use cases work through: outreach's repositories (cards, tasks,
    jobs, users, organizations) and the reputation ones."""

    @property
    def reviews(self) -> ReviewRepository: ...

    @property
    def review_templates(self) -> ResponseTemplateRepository: ...

    @property
    def review_rules(self) -> EscalationRuleRepository: ...

    @property
    def reputation_settings(self) -> ReputationSettingsRepository: ...


class SecretCipher(Protocol):
    """Encrypts a secret for a binary column (SecretBox in production)."""

    def encrypt_bytes(self, plaintext: str) -> bytes:
        """Encrypt text."""
        ...

    def decrypt_bytes(self, token: bytes) -> str:
        """Decrypt what encrypt_bytes made."""
        ...
