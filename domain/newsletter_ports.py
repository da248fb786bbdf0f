"""The ports of newsletters (docs/newsletters.md): repositories, unit of work, chat.

Kept beside the concept, as reputation's are, while the feature settles.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, Protocol

from domain.newsletters import (
    IssueCard,
    IssueMetrics,
    IssueStatus,
    Newsletter,
    NewsletterIssue,
    Subscriber,
)
from domain.ports import (
    AnalyticsSettingsRepository,
    GmailAccountRepository,
    OrgRepository,
    OutboxRepository,
    Transaction,
    UserRepository,
)
from domain.sending import OutboxStatus


class NewsletterRepository(Protocol):
    """The newsletters of an organization."""

    def add(self, org_id: int, *, now: datetime, **values: Any) -> Newsletter:
        """Store a newsletter."""
        ...

    def get(self, org_id: int, newsletter_id: int) -> Newsletter:
        """Return a newsletter or raise NotFound."""
        ...

    def list(self, org_id: int) -> builtins.list[Newsletter]:
        """Return the organization's newsletters, newest first."""
        ...

    def update(self, org_id: int, newsletter_id: int, *, now: datetime, **values: Any) -> None:
        """Change columns of a newsletter."""
        ...

    def remove(self, org_id: int, newsletter_id: int) -> bool:
        """Delete a newsletter and its issues (raise NotFound); False, deleting nothing,
        when one of its issues is scheduled or sending."""
        ...


class IssueRepository(Protocol):
    """The issues of newsletters; status changes are compare-and-set."""

    def add(self, org_id: int, newsletter_id: int, *, now: datetime, **values: Any) -> int:
        """Store an issue; return its id."""
        ...

    def get(self, org_id: int, issue_id: int) -> NewsletterIssue:
        """Return an issue or raise NotFound."""
        ...

    def get_any(self, issue_id: int) -> NewsletterIssue | None:
        """Return an issue of any organization (the sweep), or None."""
        ...

    def list(self, org_id: int, newsletter_id: int) -> builtins.list[NewsletterIssue]:
        """Return a newsletter's issues, newest first."""
        ...

    def update(
        self,
        org_id: int,
        issue_id: int,
        *,
        now: datetime,
        expected: frozenset[IssueStatus] | None = None,
        fingerprint: str | None = None,
        holding: datetime | None = None,
        **values: Any,
    ) -> bool:
        """Change an issue if its status is one of `expected` (and, given, its card shows
        `fingerprint`, its planning lease is `holding`); True when it did (compare-and-set)."""
        ...

    def remove(self, org_id: int, issue_id: int) -> bool:
        """Delete an issue unless it is scheduled or sending; True when it did."""
        ...

    def unposted(self, *, limit: int) -> builtins.list[tuple[int, int]]:
        """(org id, issue id) of issues in review whose card has no message yet."""
        ...

    def claim_planning(self, *, now: datetime, lease_until: datetime) -> tuple[int, int] | None:
        """Take the planning of one scheduled, unplanned issue whose lease is free or over;
        return (org id, issue id)."""
        ...

    def in_flight(self, *, limit: int) -> builtins.list[tuple[int, int]]:
        """(org id, issue id) of planned issues still scheduled or sending."""
        ...

    def awaiting_final(self, *, limit: int) -> builtins.list[tuple[int, int]]:
        """(org id, issue id) of cancelled issues whose card waits for the final figures and
        none of whose emails is queued or sending any more."""
        ...

    def send_counts(self, issue_id: int) -> dict[str, int]:
        """The issue's outbox rows by status."""
        ...

    def failure_reasons(
        self,
        issue_id: int,
        *,
        limit: int,
        status: OutboxStatus = OutboxStatus.FAILED,
        starting: str | None = None,
    ) -> builtins.list[tuple[str, int]]:
        """The commonest reasons the issue's rows of `status` give (why they failed, why
        they wait; only those that begin with `starting`), with their counts."""
        ...

    def metrics(self, org_id: int, issue_id: int) -> IssueMetrics:
        """The issue's numbers (opened/clicked left None; the service fills them)."""
        ...

    def tracked_counts(self, org_id: int, issue_id: int) -> tuple[int, int]:
        """(contacts who opened, contacts who clicked) of the issue's tracked sends."""
        ...

    def withdraw_queued(self, org_id: int, issue_id: int) -> int:
        """Withdraw the issue's rows still queued (`failed`, WITHDRAWN_REASON); return how
        many. Rows `sending` under a claim or `sent` are left alone."""
        ...

    def sends_of(
        self, issue_id: int, contact_ids: builtins.list[int]
    ) -> builtins.list[tuple[int, str, str | None]]:
        """(send id, text, HTML) of the issue's queued, untracked rows to these contacts."""
        ...

    def set_tracked_html(self, rows: builtins.list[tuple[int, str]]) -> None:
        """Store the tracked HTML of queued rows (send id, HTML) and mark them tracked."""
        ...

    def newsletter_busy_until(self, account_id: int) -> datetime | None:
        """The time of the latest queued newsletter email of a mailbox."""
        ...


class SubscriberRepository(Protocol):
    """The contacts who receive newsletters: reachable, and newsletters not turned off."""

    def count(self, org_id: int) -> int:
        """How many subscribers the organization has."""
        ...

    def page(self, org_id: int, *, after: int, limit: int) -> builtins.list[Subscriber]:
        """The next subscribers in contact id order after `after`."""
        ...


class NewsletterUnitOfWork(Transaction, Protocol):
    """One transaction over newsletters, their subscribers and the outbox."""

    @property
    def newsletters(self) -> NewsletterRepository: ...

    @property
    def newsletter_issues(self) -> IssueRepository: ...

    @property
    def newsletter_subscribers(self) -> SubscriberRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def gmail_accounts(self) -> GmailAccountRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def orgs(self) -> OrgRepository: ...

    @property
    def analytics_settings(self) -> AnalyticsSettingsRepository: ...


class NewsletterChat(Protocol):
    """Posts and updates issues' preview cards (raise ExternalServiceError)."""

    def post_card(self, org_id: int, channel_id: str, card: IssueCard) -> tuple[str, str]:
        """Post a card; return (channel id, message ts)."""
        ...

    def update_card(self, org_id: int, channel_id: str, ts: str, card: IssueCard) -> None:
        """Update a card's message in place."""
        ...


__all__ = [
    "IssueRepository",
    "NewsletterChat",
    "NewsletterRepository",
    "NewsletterUnitOfWork",
    "SubscriberRepository",
]
