"""The sandbox's banner and Try-next strip say where the seeded content posts are."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.sandbox import content_hint, posts_this_week
from sandbox.seed_marketing import MarketingReport

# Seeded on a Friday, the posts fall on the next business days: Monday on, next week.
FRIDAY = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
MONDAY_POST = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def test_posts_seeded_on_a_friday_are_next_weeks_and_the_hint_says_so() -> None:
    marketing = MarketingReport(linkedin_post_at=MONDAY_POST, time_zone="UTC")

    assert not posts_this_week(marketing, FRIDAY)
    hint = content_hint(marketing, FRIDAY)
    assert "next week's, so this week's list is empty until then" in hint
    assert "Mon Dec 07" in hint


def test_posts_seeded_early_in_the_week_are_this_weeks() -> None:
    tuesday = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    wednesday_post = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    marketing = MarketingReport(linkedin_post_at=wednesday_post, time_zone="UTC")

    assert posts_this_week(marketing, tuesday)
    assert content_hint(marketing, tuesday).startswith("the LinkedIn post's card comes")


def test_the_week_is_the_calendars_own_zone() -> None:
    # Sunday 23:00 in Chicago is already Monday in UTC: the Monday post is not this week's.
    sunday_night_chicago = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    marketing = MarketingReport(
        linkedin_post_at=datetime(2026, 12, 7, 16, 0, tzinfo=UTC), time_zone="America/Chicago"
    )

    assert not posts_this_week(marketing, sunday_night_chicago)
    assert posts_this_week(marketing, datetime(2026, 12, 7, 15, 0, tzinfo=UTC))


def test_without_a_seeded_post_the_hint_is_general() -> None:
    assert content_hint(None, FRIDAY) == "a post's card comes to its owner's DM on its morning"
