"""Schedule arithmetic of cadences: business days, send windows, time zones, holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cadence import (
    NoHolidays,
    SendWindow,
    add_business_days,
    is_business_day,
    next_opening,
    next_step_at,
    resolve_time_zone,
    step_gaps,
    time_zone,
)
from domain.errors import InvalidInput
from integrations.holiday_calendar import PublicHolidays, public_holidays

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")
WINDOW = SendWindow()
FEDERAL = public_holidays("US")
TEXAS = public_holidays("US", "TX")


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


def test_a_time_inside_the_window_on_a_business_day_is_kept() -> None:
    at = local(CHICAGO, 2026, 12, 2, 10, 30)  # a Wednesday
    assert next_opening(at, CHICAGO, WINDOW, TEXAS) == at.astimezone(UTC)


def test_before_the_window_waits_for_it_to_open_and_after_it_for_the_next_day() -> None:
    early = local(CHICAGO, 2026, 12, 2, 6, 0)
    late = local(CHICAGO, 2026, 12, 2, 17, 0)
    assert next_opening(early, CHICAGO, WINDOW, TEXAS) == local(CHICAGO, 2026, 12, 2, 9, 0)
    assert next_opening(late, CHICAGO, WINDOW, TEXAS) == local(CHICAGO, 2026, 12, 3, 9, 0)


def test_a_weekend_and_a_holiday_are_skipped() -> None:
    friday_evening = local(CHICAGO, 2026, 11, 20, 18, 0)
    wednesday_evening = local(CHICAGO, 2026, 11, 25, 18, 0)  # Thanksgiving is the 26th
    assert next_opening(friday_evening, CHICAGO, WINDOW, TEXAS) == local(
        CHICAGO, 2026, 11, 23, 9, 0
    )
    assert next_opening(wednesday_evening, CHICAGO, WINDOW, FEDERAL) == local(
        CHICAGO, 2026, 11, 27, 9, 0
    )
    # Texas also closes the day after Thanksgiving.
    assert next_opening(wednesday_evening, CHICAGO, WINDOW, TEXAS) == local(
        CHICAGO, 2026, 11, 30, 9, 0
    )
    # Without holidays, Thanksgiving is an ordinary Thursday.
    assert next_opening(wednesday_evening, CHICAGO, WINDOW, NoHolidays()) == local(
        CHICAGO, 2026, 11, 26, 9, 0
    )


def test_an_observed_holiday_is_skipped_too() -> None:
    # July 4th 2026 is a Saturday: the holiday is observed on Friday the 3rd.
    assert TEXAS.is_holiday(date(2026, 7, 3))
    assert TEXAS.name(date(2026, 7, 3)) == "Independence Day (observed)"
    assert not is_business_day(date(2026, 7, 3), WINDOW, TEXAS)


def test_the_window_is_the_contacts_local_time() -> None:
    """9:00 in New York is 8:00 in Chicago: a Chicago morning may already be open in NY."""
    at = local(CHICAGO, 2026, 12, 2, 8, 30)
    assert next_opening(at, NEW_YORK, WINDOW, TEXAS) == at.astimezone(UTC)
    assert next_opening(at, CHICAGO, WINDOW, TEXAS) == local(CHICAGO, 2026, 12, 2, 9, 0)


def test_day_4_after_a_thursday_send_lands_on_monday_keeping_the_time_of_day() -> None:
    sent = local(CHICAGO, 2026, 12, 3, 10, 15)  # Thursday
    assert next_step_at(sent, 4, zone=CHICAGO, window=WINDOW, holidays=TEXAS) == local(
        CHICAGO, 2026, 12, 7, 10, 15
    )


def test_a_calendar_day_step_falling_on_a_saturday_waits_for_monday_morning() -> None:
    sent = local(CHICAGO, 2026, 12, 2, 11, 0)  # Wednesday; day 3 is Saturday
    assert next_step_at(sent, 3, zone=CHICAGO, window=WINDOW, holidays=TEXAS) == local(
        CHICAGO, 2026, 12, 7, 9, 0
    )


def test_business_days_skip_weekends_and_holidays_in_the_count() -> None:
    wednesday = date(2026, 11, 25)
    # Thu 26 is Thanksgiving: 1 business day later is Fri 27, 2 is Mon 30.
    assert add_business_days(wednesday, 1, WINDOW, FEDERAL) == date(2026, 11, 27)
    assert add_business_days(wednesday, 2, WINDOW, FEDERAL) == date(2026, 11, 30)
    assert add_business_days(wednesday, 1, WINDOW, TEXAS) == date(2026, 11, 30)
    sent = local(CHICAGO, 2026, 11, 25, 14, 0)
    assert next_step_at(
        sent, 2, zone=CHICAGO, window=WINDOW, holidays=FEDERAL, business_days=True
    ) == local(CHICAGO, 2026, 11, 30, 14, 0)


def test_a_late_step_shifts_the_next_one_instead_of_bursting() -> None:
    planned = local(CHICAGO, 2026, 12, 7, 9, 0)
    ran_late = planned + timedelta(days=2, hours=5)
    assert next_step_at(ran_late, 6, zone=CHICAGO, window=WINDOW, holidays=TEXAS) > (
        next_step_at(planned, 6, zone=CHICAGO, window=WINDOW, holidays=TEXAS)
    )


def test_across_the_daylight_saving_change_the_wall_clock_time_is_kept() -> None:
    before = local(CHICAGO, 2026, 10, 29, 10, 0)  # CDT, UTC-5
    after = next_step_at(before, 4, zone=CHICAGO, window=WINDOW, holidays=TEXAS)  # Nov 2, CST
    assert after.astimezone(CHICAGO).time() == time(10, 0)
    assert after - before.astimezone(UTC) == timedelta(days=4, hours=1)


def test_gaps_between_steps() -> None:
    assert step_gaps([0, 4, 10, 21]) == [0, 4, 6, 11]


def test_the_zone_comes_from_the_contact_then_the_state_then_the_organization() -> None:
    assert resolve_time_zone(contact_zone="America/Denver", state="TX", org_zone=None).source == (
        "contact"
    )
    by_state = resolve_time_zone(contact_zone=None, state="ny", org_zone="America/Chicago")
    assert (by_state.zone.key, by_state.source) == ("America/New_York", "state")
    bad_contact = resolve_time_zone(contact_zone="Mars/Olympus", state=None, org_zone="UTC")
    assert (bad_contact.zone.key, bad_contact.source) == ("UTC", "organization")
    fallback = resolve_time_zone(contact_zone=None, state="ZZ", org_zone=None)
    assert (fallback.zone.key, fallback.source) == ("America/Chicago", "default")
    assert fallback.describe().startswith("America/Chicago: the default time zone")


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "CST6CDT ", "../etc/passwd", "x" * 300])
def test_a_time_zone_that_does_not_exist_is_refused_with_the_field(name: str) -> None:
    if name.strip() == "CST6CDT":
        assert time_zone(name).key == "CST6CDT"
        return
    with pytest.raises(InvalidInput) as refused:
        time_zone(name, field_name="contact.timezone")
    assert refused.value.field == "contact.timezone"
    assert "is not a time zone" in refused.value.message


@pytest.mark.parametrize(
    ("country", "subdivision", "field"),
    [("XX", None, "holiday_country"), ("US", "ZZ", "holiday_subdivision")],
)
def test_an_unknown_holiday_country_or_state_is_refused(
    country: str, subdivision: str | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        PublicHolidays(country, subdivision)
    assert refused.value.field == field


def test_a_window_that_cannot_open_is_refused() -> None:
    with pytest.raises(InvalidInput):
        SendWindow(start=time(17), end=time(9))
    with pytest.raises(InvalidInput):
        SendWindow(weekdays=frozenset())
    with pytest.raises(InvalidInput):
        SendWindow(weekdays=frozenset({7}))


class EveryDayAHoliday:
    def is_holiday(self, day: date) -> bool:
        return True


def test_a_calendar_without_business_days_is_an_error_not_a_hang() -> None:
    with pytest.raises(InvalidInput, match="no business day"):
        next_opening(local(CHICAGO, 2026, 12, 2, 18), CHICAGO, WINDOW, EveryDayAHoliday())


ZONES = st.sampled_from(
    [CHICAGO, NEW_YORK, ZoneInfo("America/Los_Angeles"), ZoneInfo("Pacific/Honolulu")]
)
INSTANTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(at=INSTANTS, zone=ZONES)
def test_an_opening_is_never_earlier_and_always_inside_the_window(
    at: datetime, zone: ZoneInfo
) -> None:
    opening = next_opening(at, zone, WINDOW, TEXAS)
    seen = opening.astimezone(zone)
    assert opening >= at
    assert is_business_day(seen.date(), WINDOW, TEXAS)
    assert WINDOW.start <= seen.time().replace(tzinfo=None) < WINDOW.end
    # Nothing was skipped: a time already inside the window is kept as it is, and an
    # opening that moved is the start of the window.
    local_at = at.astimezone(zone)
    inside = is_business_day(local_at.date(), WINDOW, TEXAS) and (
        WINDOW.start <= local_at.time().replace(tzinfo=None) < WINDOW.end
    )
    assert (opening == at) if inside else (seen.time().replace(tzinfo=None) == WINDOW.start)


@settings(max_examples=200, deadline=None)
@given(at=INSTANTS, zone=ZONES, gap=st.integers(min_value=0, max_value=40))
def test_a_step_is_at_least_its_gap_after_the_previous_one_and_inside_the_window(
    at: datetime, zone: ZoneInfo, gap: int
) -> None:
    due = next_step_at(at, gap, zone=zone, window=WINDOW, holidays=TEXAS)
    seen = due.astimezone(zone)
    assert seen.date() >= at.astimezone(zone).date() + timedelta(days=gap)
    assert is_business_day(seen.date(), WINDOW, TEXAS)
    assert WINDOW.start <= seen.time().replace(tzinfo=None) < WINDOW.end
