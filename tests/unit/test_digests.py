"""`/digest` read, and the digest's schedule: posting times in the subscriber's zone (through
daylight-saving changes) and the periods they report."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.analytics import TREND_DAYS
from domain.digest_message import CHART_TITLE
from domain.digests import (
    DigestPost,
    Frequency,
    PostKind,
    PostStatus,
    Verb,
    chart_title,
    digest_title,
    latest_run_at,
    next_run_at,
    on_demand_period,
    parse_digest_command,
    parse_time,
    period_for,
    retry_delay,
    scope_key,
)
from domain.errors import InvalidInput

NEW_YORK = "America/New_York"
CHICAGO = "America/Chicago"
NY = ZoneInfo(NEW_YORK)


def at(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


# --- reading the command -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("08:00", time(8, 0)),
        ("8:00", time(8, 0)),
        ("8am", time(8, 0)),
        ("8 am", time(8, 0)),
        ("17:30", time(17, 30)),
        ("5:30pm", time(17, 30)),
        ("12am", time(0, 0)),
        ("12pm", time(12, 0)),
        ("0:05", time(0, 5)),
    ],
)
def test_a_posting_time_is_read_in_each_accepted_form(text: str, expected: time) -> None:
    request = parse_digest_command(f"subscribe daily {text}")
    assert request.local_time == expected


@pytest.mark.parametrize("text", ["8", "25:00", "8:75", "13pm", "noon", "8.00", "0am"])
def test_an_unknown_time_is_refused_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_time(text)
    assert "time" in refused.value.message


def test_the_refusal_of_a_time_lists_the_forms() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_digest_command("subscribe daily breakfast")
    assert "08:00, 8:00, 17:30, 8am or 5:30pm" in refused.value.message


def test_a_daily_subscription_reads_its_channel_campaign_and_rep() -> None:
    request = parse_digest_command(
        "subscribe daily 08:00 <#C0DIGEST|sales-digest> --campaign Q4 lender win-back "
        "--rep <@U0MARIA01|maria>"
    )
    assert request.verb == Verb.SUBSCRIBE
    assert request.frequency == Frequency.DAILY
    assert request.local_time == time(8, 0)
    assert (request.channel_id, request.channel_name) == ("C0DIGEST", "sales-digest")
    assert request.campaign == "Q4 lender win-back"
    assert request.rep_slack_id == "U0MARIA01"


def test_a_campaign_name_reads_as_typed_though_slack_escapes_its_ampersand() -> None:
    # Slack sends "Smith & Sons <VIP>" typed in a command as below.
    request = parse_digest_command("now --campaign Smith &amp; Sons &lt;VIP&gt;")
    assert request.campaign == "Smith & Sons <VIP>"


def test_a_campaign_name_in_quotes_is_kept_whole_and_a_dash_counts_as_two_hyphens() -> None:
    request = parse_digest_command('now —campaign "Q4 lender win-back" <#C0DIGEST>')
    assert request.campaign == "Q4 lender win-back"
    assert request.channel_id == "C0DIGEST"


def test_a_weekly_subscription_reads_its_weekday_before_or_after_the_time() -> None:
    first = parse_digest_command("subscribe weekly mon 08:00")
    second = parse_digest_command("subscribe weekly 8am Friday <#C0DIGEST>")
    assert (first.frequency, first.weekday, first.local_time) == (
        Frequency.WEEKLY,
        0,
        time(8, 0),
    )
    assert (second.weekday, second.local_time, second.channel_id) == (4, time(8, 0), "C0DIGEST")


def test_a_weekly_subscription_without_a_day_is_refused() -> None:
    with pytest.raises(InvalidInput, match="one day, mon to sun"):
        parse_digest_command("subscribe weekly 08:00")


def test_a_subscription_without_a_frequency_is_refused() -> None:
    with pytest.raises(InvalidInput, match="needs `daily` or `weekly`"):
        parse_digest_command("subscribe 08:00")


def test_unsubscribe_takes_an_optional_frequency_and_filters() -> None:
    request = parse_digest_command("unsubscribe weekly <#C0DIGEST|sales> --campaign 12")
    assert (request.verb, request.frequency, request.channel_id, request.campaign) == (
        Verb.UNSUBSCRIBE,
        Frequency.WEEKLY,
        "C0DIGEST",
        "12",
    )
    assert parse_digest_command("unsubscribe").frequency is None


def test_now_reads_weekly_and_refuses_it_elsewhere() -> None:
    assert parse_digest_command("now --weekly").weekly
    assert not parse_digest_command("now").weekly
    with pytest.raises(InvalidInput, match="not an option here"):
        parse_digest_command("subscribe daily 08:00 --weekly")


def test_an_unknown_sub_command_is_help_that_says_so() -> None:
    request = parse_digest_command("subscribr daily 08:00")
    assert request.verb == Verb.HELP
    assert request.problem == "I don't know `/digest subscribr daily 08:00`."
    assert parse_digest_command("").verb == Verb.HELP
    assert parse_digest_command("list").verb == Verb.LIST


def test_a_rep_must_be_a_slack_mention_and_a_channel_a_slack_channel() -> None:
    with pytest.raises(InvalidInput, match="not a person I know"):
        parse_digest_command("now --rep maria")
    with pytest.raises(InvalidInput, match="not a channel I know"):
        parse_digest_command("now #sales-digest")


def test_the_scope_key_names_the_filters() -> None:
    assert scope_key(None, None) == "all"
    assert scope_key(12, None) == "c12"
    assert scope_key(None, 7) == "r7"
    assert scope_key(12, 7) == "c12-r7"


# --- the schedule --------------------------------------------------------------------------


def test_a_daily_digest_posts_next_at_its_local_time_in_utc() -> None:
    after = at(CHICAGO, 2026, 12, 1, 7, 59)
    assert next_run_at(time(8, 0), CHICAGO, Frequency.DAILY, None, after) == datetime(
        2026, 12, 1, 14, 0, tzinfo=UTC
    )
    # At 08:00 exactly, the next one is tomorrow's.
    assert next_run_at(
        time(8, 0), CHICAGO, Frequency.DAILY, None, at(CHICAGO, 2026, 12, 1, 8, 0)
    ) == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def test_a_weekly_digest_posts_on_its_weekday_only() -> None:
    tuesday = at(CHICAGO, 2026, 12, 1, 9, 0)
    found = next_run_at(time(8, 0), CHICAGO, Frequency.WEEKLY, 0, tuesday)
    assert found == at(CHICAGO, 2026, 12, 7, 8, 0).astimezone(UTC)
    assert found.astimezone(ZoneInfo(CHICAGO)).weekday() == 0


def test_a_time_the_clocks_skip_moves_forward_by_the_gap() -> None:
    # 2026-03-08 02:30 does not exist in New York: clocks go from 02:00 to 03:00.
    found = next_run_at(
        time(2, 30), NEW_YORK, Frequency.DAILY, None, at(NEW_YORK, 2026, 3, 7, 12, 0)
    )
    assert found == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert found.astimezone(NY).strftime("%H:%M %Z") == "03:30 EDT"


def test_a_time_the_clocks_show_twice_takes_the_first() -> None:
    # 2026-11-01 01:30 happens twice in New York: first in EDT (05:30 UTC).
    found = next_run_at(
        time(1, 30), NEW_YORK, Frequency.DAILY, None, at(NEW_YORK, 2026, 10, 31, 12, 0)
    )
    assert found == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    # The second 01:30 (06:30 UTC) is not another posting time.
    assert next_run_at(time(1, 30), NEW_YORK, Frequency.DAILY, None, found) == datetime(
        2026, 11, 2, 6, 30, tzinfo=UTC
    )


# Instants spread over the year 2026, dense around New York's two changes.
_INSTANTS = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)),
    st.datetimes(min_value=datetime(2026, 3, 6), max_value=datetime(2026, 3, 10)),
    st.datetimes(min_value=datetime(2026, 10, 30), max_value=datetime(2026, 11, 3)),
).map(lambda naive: naive.replace(tzinfo=UTC))
_TIMES = st.one_of(
    st.times(),
    st.sampled_from([time(2, 0), time(2, 30), time(1, 0), time(1, 30), time(0, 0)]),
).map(lambda t: time(t.hour, t.minute))


def _local_wall(when: datetime) -> tuple[date, time]:
    local = when.astimezone(NY)
    return local.date(), time(local.hour, local.minute)


@settings(max_examples=400, deadline=None)
@given(after=_INSTANTS, posting=_TIMES)
def test_the_next_daily_time_is_the_first_posting_after_the_instant(
    after: datetime, posting: time
) -> None:
    found = next_run_at(posting, NEW_YORK, Frequency.DAILY, None, after)
    assert found > after
    assert found - after <= timedelta(days=1, hours=1)
    day, wall = _local_wall(found)
    if wall != posting:
        # Only a time the clocks skipped moves, forward by the hour they skipped.
        skipped = datetime.combine(day, posting) + timedelta(hours=1)
        assert (day, wall) == (skipped.date(), skipped.time())
        assert day.month == 3
    # Nothing was skipped: no posting time lies between `after` and the one found.
    assert next_run_at(posting, NEW_YORK, Frequency.DAILY, None, found - timedelta(seconds=1)) == (
        found
    )
    earlier = latest_run_at(posting, NEW_YORK, Frequency.DAILY, None, after)
    assert earlier <= after
    assert next_run_at(posting, NEW_YORK, Frequency.DAILY, None, earlier) == found


@settings(max_examples=300, deadline=None)
@given(after=_INSTANTS, posting=_TIMES, weekday=st.integers(min_value=0, max_value=6))
def test_the_next_weekly_time_falls_on_its_weekday_within_a_week(
    after: datetime, posting: time, weekday: int
) -> None:
    found = next_run_at(posting, NEW_YORK, Frequency.WEEKLY, weekday, after)
    assert found > after
    assert found - after <= timedelta(days=7, hours=1)
    assert found.astimezone(NY).weekday() == weekday


@settings(max_examples=300, deadline=None)
@given(after=_INSTANTS, posting=_TIMES)
def test_a_daily_period_is_the_local_day_before_the_posting_day(
    after: datetime, posting: time
) -> None:
    run_at = next_run_at(posting, NEW_YORK, Frequency.DAILY, None, after)
    period = period_for(run_at, Frequency.DAILY, NEW_YORK)
    since, until = period.since.astimezone(NY), period.until.astimezone(NY)
    assert (since.hour, since.minute, until.hour, until.minute) == (0, 0, 0, 0)
    assert until.date() == run_at.astimezone(NY).date()
    assert since.date() == until.date() - timedelta(days=1)
    # 23, 24 or 25 hours: the days the clocks change are shorter or longer.
    assert period.until - period.since in (timedelta(hours=h) for h in (23, 24, 25))


def test_a_weekly_period_is_the_seven_local_days_before_the_posting_day() -> None:
    run_at = at(NEW_YORK, 2026, 3, 9, 8, 0).astimezone(UTC)  # a Monday after the change
    period = period_for(run_at, Frequency.WEEKLY, NEW_YORK)
    assert period.since == at(NEW_YORK, 2026, 3, 2, 0, 0).astimezone(UTC)
    assert period.until == at(NEW_YORK, 2026, 3, 9, 0, 0).astimezone(UTC)
    assert period.until - period.since == timedelta(days=7, hours=-1)


def test_a_post_now_reports_today_so_far_or_the_last_seven_days() -> None:
    now = at(CHICAGO, 2026, 12, 2, 10, 15).astimezone(UTC)
    today = on_demand_period(now, CHICAGO, weekly=False)
    assert (today.since, today.until) == (at(CHICAGO, 2026, 12, 2, 0, 0).astimezone(UTC), now)
    week = on_demand_period(now, CHICAGO, weekly=True)
    assert (week.since, week.until) == (now - timedelta(days=7), now)
    midnight = at(CHICAGO, 2026, 12, 2, 0, 0).astimezone(UTC)
    assert on_demand_period(midnight, CHICAGO, weekly=False).since == at(
        CHICAGO, 2026, 12, 1, 0, 0
    ).astimezone(UTC)


def test_after_downtime_only_the_latest_missed_time_is_posted() -> None:
    now = at(CHICAGO, 2026, 12, 10, 9, 0).astimezone(UTC)
    latest = latest_run_at(time(8, 0), CHICAGO, Frequency.DAILY, None, now)
    assert latest == at(CHICAGO, 2026, 12, 10, 8, 0).astimezone(UTC)
    weekly = latest_run_at(time(8, 0), CHICAGO, Frequency.WEEKLY, 0, now)
    assert weekly == at(CHICAGO, 2026, 12, 7, 8, 0).astimezone(UTC)


def test_retries_wait_longer_each_time() -> None:
    assert [retry_delay(n).total_seconds() / 60 for n in (1, 2, 3, 4)] == [1, 2, 4, 8]


def _post(kind: PostKind, frequency: Frequency, campaign_name: str | None = None) -> DigestPost:
    return DigestPost(
        id=1,
        org_id=1,
        subscription_id=None,
        kind=kind,
        frequency=frequency,
        channel_id="C0SBXREVIEW",
        time_zone="UTC",
        period_start=datetime(2025, 11, 25, tzinfo=UTC),
        period_end=datetime(2025, 12, 2, tzinfo=UTC),
        status=PostStatus.PENDING,
        campaign_name=campaign_name,
    )


def test_the_chart_is_titled_with_the_days_it_plots_not_the_digests_period() -> None:
    weekly = _post(PostKind.ON_DEMAND, Frequency.WEEKLY, campaign_name="Win-back")
    daily = _post(PostKind.SCHEDULED, Frequency.DAILY)

    assert digest_title(weekly) == "Engagement digest, last 7 days · Win-back"
    assert chart_title(weekly) == f"Sends and replies, last {TREND_DAYS} days · Win-back"
    assert chart_title(daily) == CHART_TITLE == "Sends and replies, last 30 days"
    assert TREND_DAYS == 30
