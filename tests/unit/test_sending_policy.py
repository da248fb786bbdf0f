"""The outbox's sending policy (domain/sending.py): caps, spacing, backoff, what a card says."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.sending import (
    CapPosition,
    FailureKind,
    MailboxError,
    MailboxSlot,
    SendLimits,
    backoff_detail,
    backoff_seconds,
    cap_detail,
    cap_position,
    cap_reopens_at,
    default_daily_cap,
    describe_time,
    retries_inline,
    spaced_send_at,
    spacing_detail,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
LIMITS = SendLimits()
SLOT = MailboxSlot(
    account_id=7,
    email="maria@lonestar.example.com",
    connected=True,
    daily_send_cap=2,
    min_send_interval_seconds=5,
    next_send_at=None,
    sending_until=None,
)


def failure(kind: FailureKind, retry_after: float | None = None) -> MailboxError:
    return MailboxError("Gmail said no for now.", kind=kind, retry_after=retry_after)


# --- a new mailbox's cap and what a card says about time ------------------------------------


@pytest.mark.parametrize(
    ("email", "cap"),
    [
        ("maria@gmail.com", 100),
        ("maria@GoogleMail.com", 100),
        ("maria@lonestar.example.com", 400),
    ],
)
def test_a_consumer_gmail_mailbox_gets_the_lower_daily_cap(email: str, cap: int) -> None:
    assert default_daily_cap(email, LIMITS) == cap


@pytest.mark.parametrize(
    ("at", "said"),
    [
        (NOW + timedelta(seconds=5), "15:00:05 UTC"),
        (NOW + timedelta(minutes=9, seconds=59), "15:09:59 UTC"),
        (NOW + timedelta(minutes=10), "15:10 UTC"),
        (NOW + timedelta(hours=1), "16:00 UTC"),
        (NOW + timedelta(days=1), "Nov 26 15:00 UTC"),
    ],
)
def test_a_time_is_told_to_the_second_when_soon_and_with_the_date_when_not_today(
    at: datetime, said: str
) -> None:
    assert describe_time(at, NOW) == said


# --- the daily cap ----------------------------------------------------------------------------


def test_a_mailbox_under_its_daily_cap_has_room() -> None:
    assert cap_position(SLOT, sent=1, ahead=0) is None


def test_the_first_email_over_the_cap_waits_for_the_oldest_send_of_the_window() -> None:
    position = cap_position(SLOT, sent=2, ahead=0)

    assert position == CapPosition(sent=2, offset=0)
    assert position.known_offset == 0
    oldest = NOW - timedelta(hours=23)
    assert cap_reopens_at(
        position, aged_out=oldest, interval=SLOT.interval, now=NOW, limits=LIMITS
    ) == NOW + timedelta(hours=1)


def test_emails_deferred_before_in_the_round_wait_for_later_sends_to_age_out() -> None:
    position = cap_position(SLOT, sent=2, ahead=1)

    assert position == CapPosition(sent=2, offset=1)
    assert position.known_offset == 1


def test_emails_beyond_the_sends_of_the_window_are_spaced_after_the_last_one_ages_out() -> None:
    position = cap_position(SLOT, sent=2, ahead=3)
    assert position is not None
    newest = NOW - timedelta(hours=1)

    reopen = cap_reopens_at(
        position, aged_out=newest, interval=SLOT.interval, now=NOW, limits=LIMITS
    )

    assert position.known_offset == 1  # the newest send of the window
    assert reopen == newest + timedelta(hours=24) + 2 * timedelta(seconds=5)


def test_a_cap_whose_sends_are_unknown_reopens_a_window_from_now() -> None:
    position = CapPosition(sent=0, offset=0)

    reopen = cap_reopens_at(position, aged_out=None, interval=SLOT.interval, now=NOW, limits=LIMITS)

    assert position.known_offset == 0
    assert reopen == NOW + timedelta(hours=24) + timedelta(seconds=5)


def test_the_cap_says_how_many_emails_from_which_mailbox_and_when_it_sends() -> None:
    assert cap_detail(SLOT, NOW + timedelta(hours=24), NOW) == (
        "Gmail daily cap reached (2 emails in 24 h from maria@lonestar.example.com),"
        " sending at Nov 26 15:00 UTC"
    )


# --- spacing and one send at a time -------------------------------------------------------------


def test_a_free_mailbox_sends_now() -> None:
    assert spaced_send_at(SLOT, now=NOW, ahead=0, limits=LIMITS) is None
    past = replace(SLOT, next_send_at=NOW - timedelta(seconds=1), sending_until=NOW)
    assert spaced_send_at(past, now=NOW, ahead=0, limits=LIMITS) is None


def test_an_email_waits_for_the_spacing_after_the_previous_send() -> None:
    spaced = replace(SLOT, next_send_at=NOW + timedelta(seconds=3))

    assert spaced_send_at(spaced, now=NOW, ahead=0, limits=LIMITS) == NOW + timedelta(seconds=3)
    assert spaced_send_at(spaced, now=NOW, ahead=2, limits=LIMITS) == NOW + timedelta(seconds=13)


def test_a_mailbox_sending_right_now_is_tried_again_after_its_spacing() -> None:
    busy = replace(SLOT, sending_until=NOW + timedelta(minutes=2))

    assert spaced_send_at(busy, now=NOW, ahead=0, limits=LIMITS) == NOW + timedelta(seconds=5)


def test_a_busy_mailbox_without_spacing_is_tried_again_after_half_a_second() -> None:
    busy = replace(SLOT, min_send_interval_seconds=0, sending_until=NOW + timedelta(minutes=2))

    assert spaced_send_at(busy, now=NOW, ahead=0, limits=LIMITS) == NOW + timedelta(
        milliseconds=500
    )


def test_the_spacing_says_whose_emails_are_ahead_and_when_it_sends() -> None:
    assert spacing_detail(SLOT, NOW + timedelta(seconds=5), NOW) == (
        "Queued behind other emails from maria@lonestar.example.com, sending at 15:00:05 UTC"
    )


# --- backoff ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("jitter", "pause"), [(0.0, 2.0), (0.5, 2.25), (0.999, 2.4995)])
def test_a_first_rate_limit_waits_two_seconds_and_a_quarter_more_at_most(
    jitter: float, pause: float
) -> None:
    waited = backoff_seconds(
        failure(FailureKind.RATE_LIMITED), attempt=1, limits=LIMITS, jitter=jitter
    )

    assert waited == pytest.approx(pause)


def test_the_backoff_doubles_with_each_attempt() -> None:
    pauses = [
        backoff_seconds(failure(FailureKind.UNAVAILABLE), attempt=n, limits=LIMITS, jitter=0.0)
        for n in (1, 2, 3, 4)
    ]

    assert pauses == [2.0, 4.0, 8.0, 16.0]


def test_retry_after_is_waited_at_least() -> None:
    waited = backoff_seconds(
        failure(FailureKind.RATE_LIMITED, retry_after=3), attempt=1, limits=LIMITS, jitter=0.0
    )

    assert waited == 3.0


def test_the_backoff_stops_growing_at_fifteen_minutes_unless_gmail_asks_for_longer() -> None:
    grown = backoff_seconds(failure(FailureKind.RATE_LIMITED), attempt=20, limits=LIMITS, jitter=0)
    asked = backoff_seconds(
        failure(FailureKind.RATE_LIMITED, retry_after=1800), attempt=1, limits=LIMITS, jitter=0.9
    )

    assert (grown, asked) == (900.0, 1800.0)


def test_a_used_up_sending_quota_pauses_the_mailbox_an_hour_or_as_long_as_gmail_asks() -> None:
    quota = failure(FailureKind.QUOTA)
    longer = failure(FailureKind.QUOTA, retry_after=7200)

    assert backoff_seconds(quota, attempt=1, limits=LIMITS, jitter=0.9) == 3600.0
    assert backoff_seconds(longer, attempt=1, limits=LIMITS, jitter=0.9) == 7200.0


@pytest.mark.parametrize(
    ("wait", "attempt", "inline", "retried"),
    [
        (2.0, 1, True, True),
        (10.0, 2, True, True),
        (10.5, 1, True, False),
        (2.0, 3, True, False),
        (2.0, 1, False, False),
    ],
)
def test_only_a_short_pause_of_a_send_made_for_a_waiting_caller_is_slept_here(
    wait: float, attempt: int, inline: bool, retried: bool
) -> None:
    assert retries_inline(wait, attempt=attempt, inline=inline, limits=LIMITS) is retried


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (
            FailureKind.QUOTA,
            "Gmail says maria@lonestar.example.com reached its sending limit; retrying at"
            " 16:00 UTC",
        ),
        (FailureKind.RATE_LIMITED, "Gmail asked us to slow down; retrying at 16:00 UTC"),
        (FailureKind.UNAVAILABLE, "Gmail could not be reached; retrying at 16:00 UTC"),
    ],
)
def test_a_paused_send_says_why_and_when_it_is_tried_again(kind: FailureKind, said: str) -> None:
    detail = backoff_detail(
        failure(kind),
        from_email="maria@lonestar.example.com",
        resume=NOW + timedelta(hours=1),
        now=NOW,
    )

    assert detail == said


@pytest.mark.parametrize(
    ("kind", "retryable"),
    [
        (FailureKind.RATE_LIMITED, True),
        (FailureKind.QUOTA, True),
        (FailureKind.UNCERTAIN, True),
        (FailureKind.UNAVAILABLE, True),
        (FailureKind.REVOKED, False),
        (FailureKind.REFUSED, False),
        (FailureKind.NOT_FOUND, False),
    ],
)
def test_only_a_failure_that_may_pass_by_itself_is_retryable(
    kind: FailureKind, retryable: bool
) -> None:
    assert failure(kind).retryable is retryable
