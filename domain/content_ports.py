"""The ports of the content calendar (docs/content-calendar.md): its repositories, unit of
work and the chat its due cards go to.

Kept beside the concept, as reputation's are, while the feature settles.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, Protocol

from domain.content import (
    MAX_CALENDAR_ROWS,
    ContentItem,
    ContentSettings,
    ContentStatus,
    DueCard,
    Morning,
    ScheduleEntry,
    ScheduleStatus,
)
from domain.ports import CampaignRepository, Transaction, UserRepository


class ContentRepository(Protocol):
    """Marketing content of an organization."""

    def add(self, org_id: int, values: dict[str, Any], *, now: datetime) -> ContentItem:
        """Store a new item (column values)."""
        ...

    def get(self, org_id: int, content_id: int) -> ContentItem:
        """Return an item or raise NotFound."""
        ...

    def by_source_key(self, org_id: int, source_key: str) -> ContentItem | None:
        """Return the item stored from this source (a modal's view id), if any."""
        ...

    def list(
        self,
        org_id: int,
        *,
        status: ContentStatus | None = None,
        campaign_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[ContentItem]:
        """Return items, newest first."""
        ...

    def update(self, org_id: int, content_id: int, *, now: datetime, **values: Any) -> None:
        """Change an item's columns."""
        ...

    def remove(self, org_id: int, content_id: int) -> None:
        """Delete an item (and its schedule) or raise NotFound."""
        ...


class ContentScheduleRepository(Protocol):
    """The scheduled posts of content, and the claims of the due-card sweep."""

    def add(self, org_id: int, values: dict[str, Any], *, now: datetime) -> int:
        """Store a scheduled post (column values); return its id."""
        ...

    def get(self, org_id: int, entry_id: int) -> ScheduleEntry:
        """Return a scheduled post or raise NotFound."""
        ...

    def of_content(self, org_id: int, content_id: int) -> builtins.list[ScheduleEntry]:
        """Return an item's scheduled posts, by time."""
        ...

    def window(
        self,
        org_id: int,
        since: datetime,
        until: datetime,
        *,
        limit: int = MAX_CALENDAR_ROWS,
        offset: int = 0,
    ) -> builtins.list[ScheduleEntry]:
        """Return the posts scheduled in [since, until), by time, a page of at most `limit`
        (at most MAX_CALENDAR_ROWS): the calendar, the digest."""
        ...

    def update(self, org_id: int, entry_id: int, *, now: datetime, **values: Any) -> None:
        """Change a scheduled post's columns."""
        ...

    def compare_and_set(
        self,
        org_id: int,
        entry_id: int,
        *,
        expected: frozenset[ScheduleStatus],
        now: datetime,
        **values: Any,
    ) -> bool:
        """Change a post whose status is one of `expected`; False when it is not (anymore)."""
        ...

    def remove(self, org_id: int, entry_id: int) -> None:
        """Delete a scheduled post or raise NotFound."""
        ...

    def claim_due(
        self, *, now: datetime, limit: int, lease_until: datetime, worker: str
    ) -> builtins.list[DueCard]:
        """Lease waiting posts whose due time came (and those whose lease ran out), across
        organizations, earliest first (SKIP LOCKED); count an attempt on each."""
        ...

    def record_posted(
        self,
        entry_id: int,
        *,
        worker: str,
        due_at: datetime,
        channel_id: str,
        ts: str,
        now: datetime,
    ) -> bool:
        """Record the card of a post this worker holds for this due time: it is due; False
        if the lease was lost or the post was moved, snoozed or acted on meanwhile."""
        ...

    def release(
        self,
        entry_id: int,
        *,
        worker: str,
        due_at: datetime,
        error: str,
        retry_at: datetime,
        now: datetime,
    ) -> bool:
        """Give a claimed post back with the reason, to be tried again at `retry_at` (not
        when it was moved meanwhile)."""
        ...

    def morning(self, org_id: int) -> Morning:
        """The organization's time zone and morning (its cadence settings)."""
        ...


class ContentSettingsRepository(Protocol):
    """Per-organization content settings."""

    def get(self, org_id: int) -> ContentSettings:
        """Return the settings (defaults when none are stored)."""
        ...

    def save(self, org_id: int, *, channel_id: str | None, now: datetime) -> None:
        """Store the settings."""
        ...


class ContentUnitOfWork(Transaction, Protocol):
    """What the content use cases work through."""

    @property
    def content(self) -> ContentRepository: ...

    @property
    def content_schedule(self) -> ContentScheduleRepository: ...

    @property
    def content_settings(self) -> ContentSettingsRepository: ...

    @property
    def campaigns(self) -> CampaignRepository: ...

    @property
    def users(self) -> UserRepository: ...


class ContentChat(Protocol):
    """Posts and updates due cards in chat (Slack); raises ExternalServiceError."""

    def open_target(self, org_id: int, target: str) -> str:
        """Return the channel a card for `target` (a user's id: their DM; a channel) goes to."""
        ...

    def find_card(self, org_id: int, channel_id: str, card: DueCard) -> str | None:
        """Return the ts of this card (this post, this due time: a snoozed post's new card
        is another) among the channel's latest messages, if any (a card whose ts was never
        recorded: the worker died after Slack took it)."""
        ...

    def post_card(self, org_id: int, channel_id: str, card: DueCard) -> str:
        """Post a due card; return its ts."""
        ...

    def update_card(
        self,
        org_id: int,
        entry: ScheduleEntry,
        *,
        body: str,
        link: str | None,
        time_zone: str,
        actor_slack_id: str | None,
    ) -> None:
        """Show what happened to a post on its card, in place (buttons gone)."""
        ...
