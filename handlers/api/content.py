"""The content calendar over REST (docs/content-calendar.md): marketing content, its
scheduled posts per channel, the calendar of a window, and the marketing channel.

Anyone with a token of the organization reads; writes need a write token, and changing an
item or its posts is for its owner (its creator when it has none), admins, and
organization-wide tokens.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from domain.content import (
    MAX_CALENDAR_ROWS,
    ContentIn,
    ContentItem,
    ContentSettings,
    ContentSettingsSet,
    ContentStatus,
    ContentUpdate,
    ScheduleEntry,
    ScheduleIn,
    ScheduleUpdate,
)
from domain.content_service import ContentCalendar
from domain.errors import InvalidInput
from domain.fields import Id
from handlers.api.deps import ActorDep, IdentityDep

router = APIRouter(prefix="/api/marketing", tags=["content"])


def get_content(request: Request) -> ContentCalendar:
    """Return the content calendar the app was built with."""
    calendar: ContentCalendar = request.app.state.runtime.content
    return calendar


ContentDep = Annotated[ContentCalendar, Depends(get_content)]


@router.post("/content", status_code=201, response_model=ContentItem)
def create_content(body: ContentIn, who: IdentityDep, content: ContentDep) -> ContentItem:
    """Store a piece of content (blog, social post, case study, …) with the text to copy;
    its owner (whose DM gets the due cards) defaults to the token's user."""
    return content.create_content(who.org_id, body, created_by=who.user_id)


@router.get("/content", response_model=list[ContentItem])
def list_content(
    who: IdentityDep,
    content: ContentDep,
    status: ContentStatus | None = None,
    campaign_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ContentItem]:
    """List content, newest first."""
    return content.list_content(
        who.org_id, status=status, campaign_id=campaign_id, limit=limit, offset=offset
    )


@router.get("/content/{content_id}", response_model=ContentItem)
def get_item(content_id: Id, who: IdentityDep, content: ContentDep) -> ContentItem:
    """Return one piece of content."""
    return content.get_content(who.org_id, content_id)


@router.patch("/content/{content_id}", response_model=ContentItem)
def update_item(
    content_id: Id, body: ContentUpdate, who: IdentityDep, actor: ActorDep, content: ContentDep
) -> ContentItem:
    """Change a piece of content; a new campaign must use its open posts' channels."""
    return content.update_content(actor, who.org_id, content_id, body)


@router.delete("/content/{content_id}", status_code=204)
def remove_item(content_id: Id, who: IdentityDep, actor: ActorDep, content: ContentDep) -> Response:
    """Delete a piece of content and its scheduled posts."""
    content.remove_content(actor, who.org_id, content_id)
    return Response(status_code=204)


@router.get("/content/{content_id}/schedule", response_model=list[ScheduleEntry])
def list_schedule(content_id: Id, who: IdentityDep, content: ContentDep) -> list[ScheduleEntry]:
    """An item's scheduled posts, by time."""
    return content.schedule_of(who.org_id, content_id)


@router.post("/content/{content_id}/schedule", status_code=201, response_model=ScheduleEntry)
def add_schedule(
    content_id: Id, body: ScheduleIn, who: IdentityDep, actor: ActorDep, content: ContentDep
) -> ScheduleEntry:
    """Schedule a post of the item on a channel; its card comes on that day's morning in
    the organization's time zone. A channel the item's campaign does not use is refused."""
    return content.schedule(actor, who.org_id, content_id, body, created_by=who.user_id)


@router.get("/content/{content_id}/schedule/{schedule_id}", response_model=ScheduleEntry)
def get_schedule(
    content_id: Id, schedule_id: Id, who: IdentityDep, content: ContentDep
) -> ScheduleEntry:
    """Return one scheduled post."""
    return content.get_entry(who.org_id, content_id, schedule_id)


@router.patch("/content/{content_id}/schedule/{schedule_id}", response_model=ScheduleEntry)
def update_schedule(
    content_id: Id,
    schedule_id: Id,
    body: ScheduleUpdate,
    who: IdentityDep,
    actor: ActorDep,
    content: ContentDep,
) -> ScheduleEntry:
    """Move a scheduled post, change its note, or record it `done` (with `posted_url`) or
    `skipped`; its card, if posted, shows what happened."""
    return content.update_entry(actor, who.org_id, content_id, schedule_id, body)


@router.delete("/content/{content_id}/schedule/{schedule_id}", status_code=204)
def remove_schedule(
    content_id: Id, schedule_id: Id, who: IdentityDep, actor: ActorDep, content: ContentDep
) -> Response:
    """Delete a scheduled post."""
    content.remove_entry(actor, who.org_id, content_id, schedule_id)
    return Response(status_code=204)


def _bound(value: str | None, *, name: str, end: bool) -> datetime | None:
    """A bound given as a date (the day's start; `to`: the next day's start, so that the
    day is included) or an ISO date and time (UTC when no zone)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            at = datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
            return at + timedelta(days=1) if end else at
        parsed = datetime.fromisoformat(value)
        parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"`{name}` is past the ends of the calendar", field=name) from None
    except ValueError:
        raise InvalidInput(
            f"`{name}` must be a date (2026-12-07) or an ISO date and time", field=name
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@router.get("/content-schedule", response_model=list[ScheduleEntry])
def calendar(
    who: IdentityDep,
    content: ContentDep,
    since: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CALENDAR_ROWS)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ScheduleEntry]:
    """The posts scheduled from `from` until `to` (a date as `to` includes that day), by
    time; without them, this week (Monday to Sunday in the organization's time zone) — the
    week the digest's "This week's content" lists. At most 92 days, a page of at most
    `limit` posts from `offset`."""
    start = _bound(since, name="from", end=False)
    end = _bound(until, name="to", end=True)
    if start is None or end is None:
        week = content.this_week(who.org_id)
        start, end = start or week.since, end or week.until
    return content.calendar(who.org_id, start, end, limit=limit, offset=offset)


@router.get("/content-settings", response_model=ContentSettings)
def get_settings(who: IdentityDep, content: ContentDep) -> ContentSettings:
    """The marketing channel: where due cards go when their item's owner is not in Slack."""
    return content.settings(who.org_id)


@router.put("/content-settings", response_model=ContentSettingsSet)
def put_settings(
    body: ContentSettings, who: IdentityDep, actor: ActorDep, content: ContentDep
) -> ContentSettingsSet:
    """Set the marketing channel (admins). An archived channel is refused; one Salesbot is
    not in comes back with a warning (invite Salesbot, or due cards cannot be posted)."""
    return content.update_settings(actor, who.org_id, body)
