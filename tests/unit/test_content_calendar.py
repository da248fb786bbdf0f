"""The content calendar's pure rules: the due morning in the organization's zone, snooze
times, channels a campaign allows, the schedule's moves, `/content` and the card's blocks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest

from domain.campaigns import Channel
from domain.content import (
    ContentType,
    DueCard,
    Morning,
    ScheduleEntry,
    ScheduleStatus,
    SnoozeChoice,
    Verb,
    check_campaign_channel,
    check_transition,
    due_morning,
    human_step,
    parse_channel,
    parse_content_command,
    snooze_until,
    week_of,
)
from domain.content_service import check_url
from domain.errors import InvalidInput, InvalidTransition
from handlers.slack.content_blocks import due_card, outcome_line

CHICAGO = Morning(time_zone="America/Chicago", at=time(9, 0))


def test_the_card_comes_at_nine_in_chicago_on_the_posts_local_day() -> None:
    # 2026-12-10 01:00 UTC is still Wednesday the 9th in Chicago.
    post = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)
    assert due_morning(post, CHICAGO) == datetime(2026, 12, 9, 15, 0, tzinfo=UTC)


def test_a_post_before_the_morning_is_due_at_its_own_time() -> None:
    post = datetime(2026, 12, 9, 13, 0, tzinfo=UTC)  # 07:00 in Chicago
    assert due_morning(post, CHICAGO) == post


def test_the_morning_follows_daylight_saving_time() -> None:
    summer = datetime(2026, 7, 1, 18, 0, tzinfo=UTC)
    assert due_morning(summer, CHICAGO) == datetime(2026, 7, 1, 14, 0, tzinfo=UTC)


def test_an_unknown_zone_is_read_as_utc() -> None:
    morning = Morning(time_zone="Mars/Olympus", at=time(9, 0))
    post = datetime(2026, 12, 9, 15, 0, tzinfo=UTC)
    assert due_morning(post, morning) == datetime(2026, 12, 9, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (SnoozeChoice.TOMORROW, datetime(2026, 12, 10, 15, 0, tzinfo=UTC)),
        (SnoozeChoice.TWO_DAYS, datetime(2026, 12, 11, 15, 0, tzinfo=UTC)),
        (SnoozeChoice.NEXT_WEEK, datetime(2026, 12, 14, 15, 0, tzinfo=UTC)),
    ],
)
def test_a_snooze_ends_on_a_later_local_morning(choice: SnoozeChoice, expected: datetime) -> None:
    # Wednesday 23:30 in Chicago (Thursday 05:30 UTC): tomorrow is Thursday there.
    now = datetime(2026, 12, 10, 5, 30, tzinfo=UTC)
    assert snooze_until(choice, now=now, morning=CHICAGO) == expected


def test_the_week_runs_monday_to_monday_in_the_zone() -> None:
    since, until = week_of(datetime(2026, 12, 14, 5, 0, tzinfo=UTC), "America/Chicago")
    assert (since, until) == (
        datetime(2026, 12, 7, 6, 0, tzinfo=UTC),
        datetime(2026, 12, 14, 6, 0, tzinfo=UTC),
    )


def test_a_channel_the_campaign_does_not_use_is_refused_naming_its_channels() -> None:
    check_campaign_channel(Channel.LINKEDIN, campaign_name="Q4", campaign_channels=["linkedin"])
    with pytest.raises(InvalidInput) as refused:
        check_campaign_channel(
            Channel.TIKTOK, campaign_name="Q4", campaign_channels=["email", "linkedin"]
        )
    assert refused.value.field == "channel"
    assert "its channels are email, linkedin" in refused.value.message


def test_an_unknown_channel_names_the_known_ones() -> None:
    assert parse_channel("LinkedIn") is Channel.LINKEDIN
    with pytest.raises(InvalidInput, match="unknown channel 'x'; use one of email, linkedin"):
        parse_channel("x")


def test_done_is_final_until_the_post_is_moved() -> None:
    check_transition(1, ScheduleStatus.DUE, ScheduleStatus.DONE)
    check_transition(1, ScheduleStatus.DONE, ScheduleStatus.SCHEDULED)
    with pytest.raises(InvalidTransition):
        check_transition(1, ScheduleStatus.DONE, ScheduleStatus.SKIPPED)


def test_content_commands_are_read_and_bad_ones_explained() -> None:
    assert parse_content_command("").verb is Verb.LIST
    assert parse_content_command("done #12").schedule_id == 12
    assert parse_content_command("publish").problem == "I don't know `/content publish`."
    with pytest.raises(InvalidInput, match="not the id of a scheduled post"):
        parse_content_command("done twelve")


def test_only_email_and_newsletter_are_sent_by_salesbot_the_rest_are_a_persons_step() -> None:
    assert human_step(Channel.TIKTOK).startswith("Salesbot cannot post to TikTok itself")
    assert human_step(Channel.EMAIL).startswith("Salesbot sends email through a campaign")


def _entry(**more: object) -> ScheduleEntry:
    at = datetime(2026, 12, 9, 21, 0, tzinfo=UTC)
    values: dict[str, object] = {
        "id": 7,
        "org_id": 1,
        "content_id": 3,
        "channel": Channel.LINKEDIN,
        "scheduled_for": at,
        "due_at": at,
        "status": ScheduleStatus.SCHEDULED,
        "note": None,
        "title": "Turn times <@U1> @channel",
        "content_type": ContentType.SOCIAL_POST,
        "campaign_id": None,
        "owner_user_id": 2,
        "card_channel_id": None,
        "card_ts": None,
        "card_posted_at": None,
        "attempts": 1,
        "last_error": None,
        "acted_by": None,
        "acted_at": None,
        "posted_url": None,
        "snoozed_until": None,
        "created_by": 2,
        "created_at": at,
        "updated_at": at,
        **more,
    }
    return ScheduleEntry.model_validate(values)


def test_the_due_card_shows_the_text_to_copy_safely_with_its_four_buttons() -> None:
    card = DueCard(
        entry=_entry(),
        body="Hi @here ```x``` <b>",
        link=None,
        owner_slack_id="U1",
        marketing_channel=None,
        time_zone="America/Chicago",
    )
    text, blocks = due_card(card)
    assert text.startswith("Post this today on LinkedIn: Turn times")
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "<@U1>" not in shown
    assert "&lt;@U1&gt;" in shown
    assert "&lt;b&gt;" in shown
    assert "Scheduled for Wed Dec 9, 15:00 (America/Chicago) · post #7" in shown
    actions = blocks[-1]["elements"]
    assert [a["action_id"] for a in actions] == [
        "content_done",
        "content_done_link",
        "content_snooze",
        "content_skip",
        "content_snooze_more",
    ]
    assert [a.get("value") for a in actions[:4]] == ["7", "7", "tomorrow:7", "7"]


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example><!channel><https://evil.example|Login",
        "https://a.example/|Login",
        "https://a.example/\tx",
    ],
)
def test_a_posted_link_that_would_forge_mrkdwn_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="web address"):
        check_url(url)


def test_a_stored_posted_link_cannot_mention_or_forge_a_link_on_the_card() -> None:
    done = _entry(
        status=ScheduleStatus.DONE,
        acted_at=datetime(2026, 12, 9, 15, 42, tzinfo=UTC),
        posted_url="https://a.example><!channel><https://evil.example|Login",
    )
    line = outcome_line(done, "America/Chicago", "U1")
    assert "<!channel>" not in line
    assert "<https://evil.example" not in line
    assert line.endswith("|the post>")
