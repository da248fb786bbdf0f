"""The pure rules of `email_campaigns`: which subjects a row keeps, its rows from the
analytics by step, and when the sweep refreshes a campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.analytics import Counts
from domain.email_campaigns import (
    MAX_SUBJECT_LENGTH,
    MAX_SUBJECTS,
    REFRESH_EVERY,
    SEND_GRACE,
    StepSends,
    bounded_subjects,
    email_campaign_rows,
    refresh_due,
)

NOW = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)


def test_subjects_keep_the_most_used_first_and_at_most_the_bound() -> None:
    used = [(f"Subject {n:02}", n) for n in range(1, 25)]
    kept = bounded_subjects(used)
    assert len(kept) == MAX_SUBJECTS
    assert kept[:2] == ["Subject 24", "Subject 23"]


def test_subjects_that_differ_only_in_spacing_are_one_and_long_ones_are_cut() -> None:
    kept = bounded_subjects([("Turn  times", 1), ("Turn times ", 2), ("x" * 2000, 1)])
    assert kept == ["Turn times", "x" * MAX_SUBJECT_LENGTH]


def test_rows_follow_the_analytics_counts_by_step_with_null_last() -> None:
    rows = email_campaign_rows(
        org_id=1,
        campaign_id=7,
        steps={
            None: Counts(sent=1, delivered=1),
            1: Counts(sent=2, delivered=1, bounced_hard=1, unsubscribed=1),
            0: Counts(sent=5, delivered=5, replied=3, bounced_soft=2),
        },
        sends={0: StepSends(subjects=[("Turn times", 5)], first_sent_at=NOW, last_sent_at=NOW)},
        at=NOW,
    )
    assert [(r.step, r.sent, r.delivered, r.bounced, r.unsubscribed, r.replied) for r in rows] == [
        (0, 5, 5, 0, 0, 3),
        (1, 2, 1, 1, 1, 0),
        (None, 1, 1, 0, 0, 0),
    ]
    assert rows[0].subjects == ["Turn times"]
    assert rows[0].first_sent_at == NOW
    assert {r.updated_at for r in rows} == {NOW}


def test_a_step_with_nothing_to_show_has_no_row() -> None:
    rows = email_campaign_rows(
        org_id=1, campaign_id=7, steps={2: Counts(enrolled=4)}, sends={}, at=NOW
    )
    assert rows == []


def test_a_campaign_that_never_sent_is_never_due() -> None:
    assert not refresh_due(refreshed_at=None, last_sent_at=None, now=NOW)


def test_a_campaign_that_sent_but_has_no_rows_is_due() -> None:
    assert refresh_due(refreshed_at=None, last_sent_at=NOW - timedelta(days=90), now=NOW)


def test_a_send_since_the_rows_or_just_before_them_makes_the_campaign_due() -> None:
    refreshed = NOW - timedelta(minutes=1)
    assert refresh_due(refreshed_at=refreshed, last_sent_at=NOW, now=NOW)
    assert refresh_due(refreshed_at=refreshed, last_sent_at=refreshed - SEND_GRACE, now=NOW)
    assert not refresh_due(
        refreshed_at=refreshed,
        last_sent_at=refreshed - SEND_GRACE - timedelta(seconds=1),
        now=NOW,
    )


def test_rows_older_than_the_refresh_interval_are_due_whatever_was_sent() -> None:
    old = NOW - REFRESH_EVERY
    assert refresh_due(refreshed_at=old, last_sent_at=old - timedelta(days=30), now=NOW)
