"""Repositories of the content calendar: marketing content, its schedule and the due-card
claims, and each organization's content settings. The unit of work commits."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from domain.cadence import CadenceSettings
from domain.campaigns import Channel
from domain.content import (
    MAX_CALENDAR_ROWS,
    WAITING,
    ContentItem,
    ContentSettings,
    ContentStatus,
    ContentType,
    DueCard,
    Morning,
    ScheduleEntry,
    ScheduleStatus,
)
from domain.errors import Conflict, NotFound
from storage import models as m
from storage.sql import org_row, rowcount

_Owner = aliased(m.User)


def _item(row: m.MarketingContent) -> ContentItem:
    return ContentItem(
        id=row.id,
        org_id=row.org_id,
        campaign_id=row.campaign_id,
        content_type=ContentType(row.content_type),
        title=row.title,
        body=row.body,
        link=row.link,
        status=ContentStatus(row.status),
        owner_user_id=row.owner_user_id,
        tags=list(row.tags or []),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class ContentRepo:
    """Marketing content of an organization."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _row(self, org_id: int, content_id: int) -> m.MarketingContent:
        return org_row(self._s, m.MarketingContent, org_id, content_id, what="content")

    def add(self, org_id: int, values: dict[str, Any], *, now: datetime) -> ContentItem:
        """Store a new item (column values)."""
        row = m.MarketingContent(org_id=org_id, created_at=now, updated_at=now, **values)
        self._s.add(row)
        try:
            self._s.flush()
        except IntegrityError as exc:
            raise Conflict("this content was stored by another request") from exc
        return _item(row)

    def get(self, org_id: int, content_id: int) -> ContentItem:
        """Return an item or raise NotFound."""
        return _item(self._row(org_id, content_id))

    def by_source_key(self, org_id: int, source_key: str) -> ContentItem | None:
        """Return the item stored from this source, if any."""
        row = self._s.scalars(
            select(m.MarketingContent).where(
                m.MarketingContent.org_id == org_id, m.MarketingContent.source_key == source_key
            )
        ).one_or_none()
        return _item(row) if row is not None else None

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
        c = m.MarketingContent
        query = select(c).where(c.org_id == org_id)
        if status is not None:
            query = query.where(c.status == status.value)
        if campaign_id is not None:
            query = query.where(c.campaign_id == campaign_id)
        query = query.order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset)
        return [_item(r) for r in self._s.scalars(query)]

    def update(self, org_id: int, content_id: int, *, now: datetime, **values: Any) -> None:
        """Change an item's columns."""
        row = self._row(org_id, content_id)
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = now
        self._s.flush()

    def remove(self, org_id: int, content_id: int) -> None:
        """Delete an item (its schedule goes with it) or raise NotFound."""
        row = self._row(org_id, content_id)
        self._s.execute(
            delete(m.ContentSchedule).where(
                m.ContentSchedule.org_id == org_id, m.ContentSchedule.content_id == content_id
            )
        )
        self._s.delete(row)
        self._s.flush()


def _entry_query() -> Select[m.ContentSchedule, m.MarketingContent]:
    return select(m.ContentSchedule, m.MarketingContent).join(
        m.MarketingContent,
        (m.MarketingContent.id == m.ContentSchedule.content_id)
        & (m.MarketingContent.org_id == m.ContentSchedule.org_id),
    )


def _entry(row: m.ContentSchedule, item: m.MarketingContent) -> ScheduleEntry:
    return ScheduleEntry(
        id=row.id,
        org_id=row.org_id,
        content_id=row.content_id,
        channel=Channel(row.channel),
        scheduled_for=row.scheduled_for,
        due_at=row.due_at,
        status=ScheduleStatus(row.status),
        note=row.note,
        title=item.title,
        content_type=ContentType(item.content_type),
        campaign_id=item.campaign_id,
        owner_user_id=item.owner_user_id,
        card_channel_id=row.card_channel_id,
        card_ts=row.card_ts,
        card_posted_at=row.card_posted_at,
        attempts=row.attempts,
        last_error=row.last_error,
        acted_by=row.acted_by,
        acted_at=row.acted_at,
        posted_url=row.posted_url,
        snoozed_until=row.snoozed_until,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def morning_of(stored: object) -> Morning:
    """An organization's morning from its stored cadence settings (defaults when unset or
    unreadable): its time zone and the start of its send window."""
    try:
        settings = CadenceSettings.model_validate(stored if isinstance(stored, dict) else {})
    except ValidationError:
        return Morning()
    return Morning(time_zone=settings.timezone or "UTC", at=settings.window_start)


class ContentScheduleRepo:
    """Scheduled posts, the calendar's query and the due-card sweep's claims."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _postgresql(self) -> bool:
        return self._s.get_bind().dialect.name == "postgresql"

    def add(self, org_id: int, values: dict[str, Any], *, now: datetime) -> int:
        """Store a scheduled post (column values); return its id."""
        row = m.ContentSchedule(org_id=org_id, created_at=now, updated_at=now, **values)
        self._s.add(row)
        self._s.flush()
        return row.id

    def get(self, org_id: int, entry_id: int) -> ScheduleEntry:
        """Return a scheduled post or raise NotFound."""
        found = self._s.execute(
            _entry_query()
            .where(m.ContentSchedule.org_id == org_id, m.ContentSchedule.id == entry_id)
            .execution_options(populate_existing=True)
        ).one_or_none()
        if found is None:
            raise NotFound(f"scheduled post {entry_id} not found")
        return _entry(found[0], found[1])

    def of_content(self, org_id: int, content_id: int) -> builtins.list[ScheduleEntry]:
        """Return an item's scheduled posts, by time."""
        s = m.ContentSchedule
        rows = self._s.execute(
            _entry_query()
            .where(s.org_id == org_id, s.content_id == content_id)
            .order_by(s.scheduled_for, s.id)
        ).all()
        return [_entry(r[0], r[1]) for r in rows]

    def window(
        self,
        org_id: int,
        since: datetime,
        until: datetime,
        *,
        limit: int = MAX_CALENDAR_ROWS,
        offset: int = 0,
    ) -> builtins.list[ScheduleEntry]:
        """Return the posts scheduled in [since, until), by time, a page of at most `limit`."""
        s = m.ContentSchedule
        rows = self._s.execute(
            _entry_query()
            .where(s.org_id == org_id, s.scheduled_for >= since, s.scheduled_for < until)
            .order_by(s.scheduled_for, s.id)
            .limit(min(limit, MAX_CALENDAR_ROWS))
            .offset(offset)
        ).all()
        return [_entry(r[0], r[1]) for r in rows]

    def update(self, org_id: int, entry_id: int, *, now: datetime, **values: Any) -> None:
        """Change a scheduled post's columns."""
        s = m.ContentSchedule
        self._s.execute(
            update(s).where(s.org_id == org_id, s.id == entry_id).values(**values, updated_at=now)
        )

    def compare_and_set(
        self,
        org_id: int,
        entry_id: int,
        *,
        expected: frozenset[ScheduleStatus],
        now: datetime,
        **values: Any,
    ) -> bool:
        """Change a post whose status is one of `expected`."""
        s = m.ContentSchedule
        result = self._s.execute(
            update(s)
            .where(
                s.org_id == org_id,
                s.id == entry_id,
                s.status.in_([e.value for e in expected]),
            )
            .values(**values, updated_at=now)
        )
        return rowcount(result) == 1

    def remove(self, org_id: int, entry_id: int) -> None:
        """Delete a scheduled post or raise NotFound."""
        s = m.ContentSchedule
        result = self._s.execute(delete(s).where(s.org_id == org_id, s.id == entry_id))
        if rowcount(result) != 1:
            raise NotFound(f"scheduled post {entry_id} not found")

    def claim_due(
        self, *, now: datetime, limit: int, lease_until: datetime, worker: str
    ) -> builtins.list[DueCard]:
        """Lease waiting posts whose due time came and whose lease (if any) ran out, across
        organizations, earliest first (SKIP LOCKED); each claim counts an attempt."""
        s = m.ContentSchedule
        waiting = [w.value for w in WAITING]
        claimable = (
            s.status.in_(waiting),
            s.due_at <= now,
            or_(s.lease_until.is_(None), s.lease_until <= now),
        )
        query = select(s.id).where(*claimable).order_by(s.due_at, s.id).limit(limit)
        if self._postgresql():
            query = query.with_for_update(skip_locked=True)
        ids = list(self._s.scalars(query))
        if not ids:
            return []
        self._s.execute(
            update(s)
            .where(s.id.in_(ids), *claimable)
            .values(
                claimed_by=worker,
                lease_until=lease_until,
                attempts=s.attempts + 1,
                updated_at=now,
            )
        )
        rows = self._s.execute(
            _entry_query()
            .add_columns(
                _Owner.slack_user_id, m.ContentSetting.channel_id, m.Organization.cadence_settings
            )
            .outerjoin(_Owner, _Owner.id == m.MarketingContent.owner_user_id)
            .outerjoin(m.ContentSetting, m.ContentSetting.org_id == s.org_id)
            .join(m.Organization, m.Organization.id == s.org_id)
            .where(s.id.in_(ids), s.claimed_by == worker)
            .order_by(s.due_at, s.id)
            .execution_options(populate_existing=True)
        ).all()
        return [
            DueCard(
                entry=_entry(row, item),
                body=item.body,
                link=item.link,
                owner_slack_id=slack_id,
                marketing_channel=channel,
                time_zone=morning_of(cadence).time_zone,
            )
            for row, item, slack_id, channel, cadence in rows
        ]

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
        """Record the card of a post this worker holds for this due time: it is due now (a
        post moved or snoozed meanwhile has another due time and stays waiting for it)."""
        s = m.ContentSchedule
        result = self._s.execute(
            update(s)
            .where(
                s.id == entry_id,
                s.claimed_by == worker,
                s.due_at == due_at,
                s.status.in_([w.value for w in WAITING]),
            )
            .values(
                status=ScheduleStatus.DUE.value,
                card_channel_id=channel_id,
                card_ts=ts,
                card_posted_at=now,
                lease_until=None,
                last_error=None,
                updated_at=now,
            )
        )
        return rowcount(result) == 1

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
        """Give a claimed post back with the reason, to be tried again at `retry_at`."""
        s = m.ContentSchedule
        result = self._s.execute(
            update(s)
            .where(
                s.id == entry_id,
                s.claimed_by == worker,
                s.due_at == due_at,
                s.status.in_([w.value for w in WAITING]),
            )
            .values(lease_until=retry_at, last_error=error, updated_at=now)
        )
        return rowcount(result) == 1

    def morning(self, org_id: int) -> Morning:
        """The organization's time zone and morning (its cadence settings)."""
        stored = self._s.scalar(
            select(m.Organization.cadence_settings).where(m.Organization.id == org_id)
        )
        return morning_of(stored)


class ContentSettingsRepo:
    """Per-organization content settings."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, org_id: int) -> ContentSettings:
        """Return the settings (defaults when none are stored)."""
        row = self._s.get(m.ContentSetting, org_id)
        return ContentSettings(channel_id=row.channel_id if row is not None else None)

    def save(self, org_id: int, *, channel_id: str | None, now: datetime) -> None:
        """Store the settings (creating the row on first use)."""
        row = self._s.get(m.ContentSetting, org_id)
        if row is None:
            row = m.ContentSetting(org_id=org_id)
            self._s.add(row)
        row.channel_id = channel_id
        row.updated_at = now
        self._s.flush()
