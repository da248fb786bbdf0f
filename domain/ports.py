"""Ports: the small interfaces use cases need from storage and the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from domain.audience import AudienceCriteria, AudienceSize
from domain.campaigns import Campaign, CampaignFields
from domain.mailboxes import (
    AccountTokens,
    ConsentRequest,
    ConsumedState,
    GmailAccountView,
    Grant,
    MailboxAllowance,
    MailboxIdentity,
    RevokeResult,
)
from domain.suppression import ContactSummary
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


# --- mailboxes ---


class GmailAccountRepository(Protocol):
    """Reps' mailboxes; tokens are encrypted at rest by the implementation."""

    def save_connection(
        self,
        org_id: int,
        *,
        user_id: int,
        email: str,
        scopes: Sequence[str],
        refresh_token: str,
        access_token: str | None,
        access_token_expires_at: datetime | None,
        daily_send_cap: int,
        min_send_interval_seconds: int,
        now: datetime,
    ) -> GmailAccountView:
        """Store a fresh consent: the mailbox becomes the user's only connected one.

        Raise MailboxTaken when the mailbox is connected for another user.
        """
        ...

    def for_user(
        self, org_id: int, user_id: int, *, connected_only: bool = False
    ) -> GmailAccountView | None:
        """Return the user's mailbox: the connected one, else the one changed last."""
        ...

    def tokens(self, account_id: int) -> AccountTokens | None:
        """Return a connected mailbox's decrypted tokens, or None once disconnected."""
        ...

    def save_access_token(
        self, account_id: int, *, access_token: str, expires_at: datetime | None, now: datetime
    ) -> None:
        """Keep a refreshed access token (only while the mailbox is connected)."""
        ...

    def mark_disconnected(self, account_id: int, *, reason: str, now: datetime) -> bool:
        """Forget a mailbox's tokens and say why; True if it was connected until now."""
        ...

    def sends_since(self, account_id: int, since: datetime) -> int:
        """Count a mailbox's sends (made or in flight) since a moment."""
        ...


class OAuthStateRepository(Protocol):
    """Consents in progress; each is consumed once by compare-and-set."""

    def add(
        self,
        org_id: int,
        *,
        user_id: int,
        nonce: str,
        code_verifier: str,
        redirect_uri: str,
        expires_at: datetime,
    ) -> None:
        """Remember a consent that was just started (its PKCE verifier encrypted at rest)."""
        ...

    def consume(
        self, nonce: str, *, org_id: int, user_id: int, now: datetime
    ) -> ConsumedState | None:
        """Use a consent once: None if unknown, for someone else, expired or already used."""
        ...

    def purge(self, *, expired_before: datetime) -> int:
        """Delete consents that expired before the given time; return how many."""
        ...


class MailboxAllowanceRepository(Protocol):
    """Which mailbox addresses the users of an organization may connect."""

    def for_user(self, org_id: int, user_id: int) -> MailboxAllowance:
        """Return which addresses a user may connect; NotFound for an unknown user."""
        ...

    def role_of(self, org_id: int, user_id: int) -> str | None:
        """Return a user's role, or None for an unknown user."""
        ...

    def allow(
        self,
        org_id: int,
        *,
        user_email: str,
        address: str | None,
        allowed_by: str,
        now: datetime,
    ) -> MailboxAllowance:
        """Let a user connect one other address (None takes it back), recording who and when;
        NotFound when no user has this email."""
        ...


class MailboxUnitOfWork(Protocol):
    """One transaction over the mailbox repositories; commits once."""

    @property
    def gmail_accounts(self) -> GmailAccountRepository: ...

    @property
    def oauth_states(self) -> OAuthStateRepository: ...

    @property
    def mailbox_allowances(self) -> MailboxAllowanceRepository: ...

    def __enter__(self) -> MailboxUnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...


class StateSigner(Protocol):
    """Signs the OAuth state (LinkSigner in production)."""

    def sign(self, payload: dict[str, Any], *, expires_in: int | None = None) -> str:
        """Return a signed token carrying the payload, valid `expires_in` seconds."""
        ...

    def verify(self, token: str) -> dict[str, Any]:
        """Return the payload of a genuine, unexpired token; raise InvalidInput otherwise."""
        ...


class MailboxAuthorization(Protocol):
    """Google's half of connecting a mailbox (OAuth 2.0 with PKCE, the Gmail profile)."""

    def consent_url(self, *, state: str, login_hint: str | None) -> ConsentRequest:
        """Return Google's consent URL for offline access, with a fresh PKCE verifier."""
        ...

    def exchange_code(self, code: str, *, code_verifier: str) -> Grant:
        """Exchange an authorization code; raise ConsentRefused when Google will not."""
        ...

    def open_mailbox(self, grant: Grant) -> MailboxIdentity:
        """Return the address of the mailbox a grant opens (refreshing its access token if
        needed); raise ExternalServiceError when the mailbox cannot be opened."""
        ...

    def revoke(self, token: str) -> RevokeResult:
        """Revoke a refresh (or access) token, which revokes the whole grant."""
        ...

    def discard_grant(self, token: str) -> None:
        """Revoke a grant Salesbot will not keep, waiting briefly; the outcome is not needed."""
        ...


# --- suppression ---


class OptOutRepository(Protocol):
    """Contacts' opt-outs and what an opt-out stops."""

    def summary(self, org_id: int, contact_id: int) -> ContactSummary | None:
        """Return a contact's address and opt-out state, with its organization's name."""
        ...

    def mark_opted_out(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        """Stamp the contact's opt-out unless it has one; True if this call stamped it."""
        ...

    def record_opt_out(self, org_id: int, contact_id: int, *, at: datetime, source: str) -> None:
        """Add the opt-out to the contact's engagement history."""
        ...

    def stop_enrollments(self, org_id: int, contact_id: int, *, reason: str, at: datetime) -> int:
        """Stop the contact's active and paused enrollments; return how many."""
        ...

    def cancel_queued_emails(self, org_id: int, contact_id: int, *, email: str, reason: str) -> int:
        """Fail every queued email to the contact (by id or address); return how many."""
        ...


class SuppressionUnitOfWork(Protocol):
    """One transaction over the opt-out repository; commits once."""

    @property
    def opt_outs(self) -> OptOutRepository: ...

    def __enter__(self) -> SuppressionUnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...
