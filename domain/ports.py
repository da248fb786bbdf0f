"""Ports: the small interfaces use cases need from storage and the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from domain.accounts import Org, OrgSummary, StoredToken, TokenSummary, User
from domain.audience import AudienceCriteria, AudienceSize
from domain.campaigns import Campaign, CampaignFields
from domain.contacts import TokenScope, UserRole
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


# --- accounts ---


class OrgRepository(Protocol):
    """Organizations and the Slack workspaces they are bound to."""

    def add(self, *, slug: str, name: str) -> Org:
        """Store a new organization (the slug is valid and free)."""
        ...

    def find(self, org_id: int) -> Org | None:
        """Return the organization with this id, if any."""
        ...

    def find_by_slug(self, slug: str) -> Org | None:
        """Return the organization with this slug, if any."""
        ...

    def find_by_slack_team(self, team_id: str) -> Org | None:
        """Return the organization bound to this Slack workspace, if any."""
        ...

    def set_slack_team(self, org_id: int, team_id: str) -> None:
        """Record the Slack workspace an organization is bound to."""
        ...

    def list_summaries(self) -> list[OrgSummary]:
        """Return every organization with its workspace, admins and counts, by slug."""
        ...


class UserRepository(Protocol):
    """Users of organizations; `find` is the one lookup of a user by id."""

    def find(self, org_id: int, user_id: int) -> User | None:
        """Return the user with this id in the organization, if any."""
        ...

    def find_by_email(self, org_id: int, email: str) -> User | None:
        """Return the user with this (normalized) address in the organization, if any."""
        ...

    def find_by_slack_id(self, org_id: int, slack_user_id: str) -> User | None:
        """Return the user linked to this Slack id in the organization, if any."""
        ...

    def has_admin(self, org_id: int) -> bool:
        """Tell whether the organization has an admin."""
        ...

    def add(
        self,
        org_id: int,
        *,
        email: str,
        name: str | None,
        role: UserRole,
        slack_user_id: str | None,
    ) -> User:
        """Store a new user."""
        ...

    def save(self, user: User) -> None:
        """Write a user's name, role and Slack id."""
        ...


class TokenRepository(Protocol):
    """API tokens, kept as hashes of their secrets."""

    def add(
        self,
        org_id: int,
        *,
        name: str,
        scope: TokenScope,
        user_id: int | None,
        token_hash: str,
        prefix: str,
    ) -> int:
        """Store a new token; return its id."""
        ...

    def find_by_hash(self, token_hash: str) -> StoredToken | None:
        """Return the token with this hash, if any."""
        ...

    def touch(self, token_id: int, *, at: datetime) -> None:
        """Record when a token was last used."""
        ...

    def revoke(self, org_id: int, token_id: int, *, at: datetime) -> bool:
        """Revoke a token of the organization; False if it has no such token."""
        ...

    def list_summaries(self, org_id: int) -> list[TokenSummary]:
        """Return the organization's tokens, oldest first."""
        ...


class AccountsUnitOfWork(Protocol):
    """One transaction over the account repositories; commits once."""

    # Read-only properties, so that a unit of work holding concrete repositories fits.
    @property
    def orgs(self) -> OrgRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def tokens(self) -> TokenRepository: ...

    def __enter__(self) -> AccountsUnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...
