"""When a cadence step may go out: business days, send windows and time zones (issue 13).

Pure schedule arithmetic the cadence engine builds on. A step is due some days after the
previous one ran (calendar or business days), and goes out only inside the contact's send
window (by default 9:00 to 17:00, Monday to Friday) in the contact's time zone, never on a
holiday of the organization's calendar. A step whose time falls outside the window moves to
the next opening; the next step counts from when this one actually ran, so a late step
shifts the rest of the cadence instead of causing a catch-up burst.

The time zone is the contact's own, else the zone of the US state their client (or they)
are in, else the organization's; `resolve_time_zone` says which one it used, so a card can
tell the rep. Holidays come through the `HolidayCalendar` port (integrations/holiday_calendar.py
builds one from the `holidays` package); the domain only asks "is this day a holiday?".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from domain.errors import InvalidInput

DEFAULT_ZONE: Final = "America/Chicago"
WEEKDAYS: Final = frozenset(range(5))  # Monday (0) to Friday (4)
# A window with no business day in a year (every weekday a holiday) is a configuration
# error, not a reason to loop forever.
MAX_SEARCH_DAYS: Final = 366

# The zone most of each state's people live in (states split across zones take the larger).
US_STATE_ZONES: Final[Mapping[str, str]] = {
    "AL": "America/Chicago",
    "AK": "America/Anchorage",
    "AZ": "America/Phoenix",
    "AR": "America/Chicago",
    "CA": "America/Los_Angeles",
    "CO": "America/Denver",
    "CT": "America/New_York",
    "DE": "America/New_York",
    "DC": "America/New_York",
    "FL": "America/New_York",
    "GA": "America/New_York",
    "HI": "Pacific/Honolulu",
    "ID": "America/Boise",
    "IL": "America/Chicago",
    "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago",
    "KS": "America/Chicago",
    "KY": "America/New_York",
    "LA": "America/Chicago",
    "ME": "America/New_York",
    "MD": "America/New_York",
    "MA": "America/New_York",
    "MI": "America/Detroit",
    "MN": "America/Chicago",
    "MS": "America/Chicago",
    "MO": "America/Chicago",
    "MT": "America/Denver",
    "NE": "America/Chicago",
    "NV": "America/Los_Angeles",
    "NH": "America/New_York",
    "NJ": "America/New_York",
    "NM": "America/Denver",
    "NY": "America/New_York",
    "NC": "America/New_York",
    "ND": "America/Chicago",
    "OH": "America/New_York",
    "OK": "America/Chicago",
    "OR": "America/Los_Angeles",
    "PA": "America/New_York",
    "RI": "America/New_York",
    "SC": "America/New_York",
    "SD": "America/Chicago",
    "TN": "America/Chicago",
    "TX": "America/Chicago",
    "UT": "America/Denver",
    "VT": "America/New_York",
    "VA": "America/New_York",
    "WA": "America/Los_Angeles",
    "WV": "America/New_York",
    "WI": "America/Chicago",
    "WY": "America/Denver",
    "PR": "America/Puerto_Rico",
    "GU": "Pacific/Guam",
    "VI": "America/St_Thomas",
}


class Channel(StrEnum):
    """How a cadence step reaches the contact."""

    EMAIL = "email"
    LINKEDIN = "linkedin"
    CALL = "call"
    TASK = "task"


class HolidayCalendar(Protocol):
    """The days nobody is sent anything: an organization's public holidays."""

    def is_holiday(self, day: date) -> bool:
        """Tell whether `day` is a holiday."""
        ...


class NoHolidays:
    """A calendar without holidays (an organization that set no country)."""

    def is_holiday(self, day: date) -> bool:
        """Tell whether `day` is a holiday: never."""
        return False


@dataclass(frozen=True)
class SendWindow:
    """When, in the contact's local time, a step may go out."""

    start: time = time(9, 0)
    end: time = time(17, 0)
    weekdays: frozenset[int] = field(default=WEEKDAYS)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise InvalidInput(
                f"the send window must start before it ends ({self.start:%H:%M} is not before "
                f"{self.end:%H:%M})",
                field="send_window",
            )
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise InvalidInput(
                "the send window needs at least one weekday, numbered 0 (Monday) to 6 (Sunday)",
                field="send_window",
            )
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidInput("send window times are local times, without a zone")


@dataclass(frozen=True)
class ResolvedZone:
    """The time zone a contact's steps are scheduled in, and where it came from."""

    zone: ZoneInfo
    source: str  # "contact", "state", "organization" or "default"

    def describe(self) -> str:
        """Say which zone was used and why, for a card."""
        reasons = {
            "contact": "the contact's time zone",
            "state": "the time zone of the contact's state",
            "organization": "the organization's time zone (the contact has none)",
            "default": "the default time zone (neither the contact nor the organization has one)",
        }
        return f"{self.zone.key}: {reasons[self.source]}"


def time_zone(name: str, *, field_name: str = "timezone") -> ZoneInfo:
    """Return the IANA zone of this name, or raise InvalidInput naming the field."""
    cleaned = name.strip()
    if not cleaned or cleaned not in _zone_names():
        raise InvalidInput(
            f"{name!r} is not a time zone: use an IANA name such as America/Chicago",
            field=field_name,
        )
    try:
        return ZoneInfo(cleaned)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{name!r} is not a time zone", field=field_name) from None


_ZONES: set[str] = set()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def resolve_time_zone(
    *, contact_zone: str | None, state: str | None, org_zone: str | None
) -> ResolvedZone:
    """Return the zone to schedule a contact's steps in: contact, state, org, default.

    A stored zone that is not a real one (imported data) is skipped like a missing one.
    """
    if contact_zone and contact_zone.strip() in _zone_names():
        return ResolvedZone(ZoneInfo(contact_zone.strip()), "contact")
    if state and (by_state := US_STATE_ZONES.get(state.strip().upper())) is not None:
        return ResolvedZone(ZoneInfo(by_state), "state")
    if org_zone and org_zone.strip() in _zone_names():
        return ResolvedZone(ZoneInfo(org_zone.strip()), "organization")
    return ResolvedZone(ZoneInfo(DEFAULT_ZONE), "default")


def is_business_day(day: date, window: SendWindow, holidays: HolidayCalendar) -> bool:
    """Tell whether steps may go out on `day`: one of the window's weekdays, not a holiday."""
    return day.weekday() in window.weekdays and not holidays.is_holiday(day)


def add_business_days(day: date, count: int, window: SendWindow, holidays: HolidayCalendar) -> date:
    """Return the `count`-th business day after `day` (count 0: `day` itself)."""
    if count < 0:
        raise ValueError("count must not be negative")
    current = day
    for _ in range(count):
        current = _next_business_day(current + timedelta(days=1), window, holidays)
    return current


def _next_business_day(day: date, window: SendWindow, holidays: HolidayCalendar) -> date:
    """Return `day` or the first business day after it."""
    current = day
    for _ in range(MAX_SEARCH_DAYS):
        if is_business_day(current, window, holidays):
            return current
        current += timedelta(days=1)
    raise InvalidInput(
        f"no business day within {MAX_SEARCH_DAYS} days of {day.isoformat()}: check the send "
        "window's weekdays and the holiday calendar",
        field="send_window",
    )


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Return the instant of a local wall-clock time (a time skipped by DST moves forward)."""
    moment = datetime.combine(day, at, tzinfo=zone)
    # A wall-clock time in a spring-forward gap does not exist; round-tripping through UTC
    # gives the instant an hour later, which is what a person's clock shows then.
    return moment.astimezone(UTC).astimezone(zone)


def next_opening(
    at: datetime, zone: ZoneInfo, window: SendWindow, holidays: HolidayCalendar
) -> datetime:
    """Return the first instant at or after `at` inside the window, in UTC."""
    if at.tzinfo is None:
        raise ValueError("a naive datetime has no place in a schedule")
    local = at.astimezone(zone)
    day = local.date()
    if is_business_day(day, window, holidays):
        opens, closes = _local(day, window.start, zone), _local(day, window.end, zone)
        if local < opens:
            return opens.astimezone(UTC)
        if local < closes:
            return at.astimezone(UTC)
    day = _next_business_day(day + timedelta(days=1), window, holidays)
    return _local(day, window.start, zone).astimezone(UTC)


def next_step_at(
    previous_at: datetime,
    gap_days: int,
    *,
    zone: ZoneInfo,
    window: SendWindow,
    holidays: HolidayCalendar,
    business_days: bool = False,
) -> datetime:
    """Return when a step is due: `gap_days` after the previous step ran, inside the window.

    The gap counts from the previous step's actual time, in the contact's local calendar
    (calendar days, or business days), keeping its wall-clock time; the result then moves to
    the next opening of the window. A previous step that ran late pushes this one later too.
    """
    if gap_days < 0:
        raise ValueError("a gap between steps cannot be negative")
    local = previous_at.astimezone(zone)
    if business_days:
        day = add_business_days(local.date(), gap_days, window, holidays)
    else:
        day = local.date() + timedelta(days=gap_days)
    candidate = _local(day, local.time().replace(tzinfo=None), zone)
    return next_opening(candidate, zone, window, holidays)


def step_gaps(days: list[int]) -> list[int]:
    """Return the gaps between a cadence's steps (days 0, 4, 10 → gaps 0, 4, 6)."""
    return [b - a for a, b in zip([0, *days], days, strict=False)]
