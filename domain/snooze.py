"""Snoozing a card: when "in an hour", "tomorrow 9:00" and "next week" end, in the rep's
own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The hour a snooze "until tomorrow" or "until next week" ends, on the rep's clock.
MORNING: Final = time(9, 0)


class SnoozeFor(StrEnum):
    """How long a rep snoozes a card."""

    HOUR = "hour"
    TOMORROW = "tomorrow"  # tomorrow at 9:00
    NEXT_WEEK = "next_week"  # next Monday at 9:00


def time_zone_named(name: str | None) -> tzinfo:
    """The IANA time zone `name` (as Slack's users.info gives it), UTC when unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def snooze_until(choice: SnoozeFor, *, now: datetime, tz: tzinfo) -> datetime:
    """When a snooze chosen at `now` ends, in UTC; days and 9:00 are the rep's (`tz`)."""
    if choice is SnoozeFor.HOUR:
        return (now + timedelta(hours=1)).astimezone(UTC)
    today = now.astimezone(tz).date()
    if choice is SnoozeFor.TOMORROW:
        day = today + timedelta(days=1)
    else:
        # Monday is weekday 0: from a Monday the next one is 7 days on, from a Sunday 1.
        day = today + timedelta(days=7 - today.weekday())
    # The zone gives 9:00 its offset on that day (daylight saving time included).
    return datetime.combine(day, MORNING, tzinfo=tz).astimezone(UTC)
