"""Ports: the small interfaces use cases need from storage and the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from domain.audience import AudienceCriteria, AudienceSize
from domain.campaigns import Campaign, CampaignFields
from domain.templates import EmailTemplate, EmailTemplateFields


class CampaignRepository(Protocol):
    """Campaigns of one organization."""

    def add(self, org_id: int, fields: CampaignFields, *, created_by: int | None) -> Campaign:
        """Store a new campaign."""
        ...

    def get(self, org_id: int, campaign_id: int) -> Campaign:
        """Return a campaign or raise NotFound."""
        ...

    def find_by_name(self, org_id: int, name: str) -> Campaign | None:
        """Return the campaign with this name (case-insensitive), if any."""
        ...

    def list(self, org_id: int, *, status: str | None, limit: int, offset: int) -> list[Campaign]:
        """Return campaigns, newest first."""
        ...

    def update(
        self, org_id: int, campaign_id: int, fields: CampaignFields, *, now: datetime
    ) -> Campaign:
        """Replace a campaign's fields."""
        ...


class TemplateRepository(Protocol):
    """Email templates of one organization."""

    def add(
        self,
        org_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        created_by: int | None,
    ) -> EmailTemplate:
        """Store a new template."""
        ...

    def get(self, org_id: int, template_id: int) -> EmailTemplate:
        """Return a template or raise NotFound."""
        ...

    def list(self, org_id: int, *, category: str | None) -> list[EmailTemplate]:
        """Return templates by name."""
        ...

    def update(
        self,
        org_id: int,
        template_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        now: datetime,
    ) -> EmailTemplate:
        """Replace a template's fields."""
        ...

    def delete(self, org_id: int, template_id: int) -> None:
        """Delete a template or raise NotFound."""
        ...

    def existing_ids(self, org_id: int, ids: Sequence[int]) -> set[int]:
        """Return which of these template ids exist in the organization."""
        ...


class AudienceRepository(Protocol):
    """Counts and samples contacts matching a targeting, in one query."""

    def size(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime, sample_size: int
    ) -> AudienceSize:
        """Return how many contacts match and a sample of them."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the repositories; commits once."""

    campaigns: CampaignRepository
    templates: TemplateRepository
    audience: AudienceRepository

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...
