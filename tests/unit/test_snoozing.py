"""Snoozing a card (domain/snooze.py, domain/outreach/snoozing.py) on fakes: when a snooze
ends in the rep's time zone; only a card waiting for someone is snoozed; the sweep posts
a card whose snooze ended again, as a new message, once; and a sweep that dies anywhere
leaves the card to come back later, at worst twice, never not at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from domain.cards import Card, CardState, CardType, CardView, Priority
from domain.errors import ExternalServiceError, InvalidInput, NotFound
from domain.outreach import CardRefused
from domain.outreach.snoozing import BACK_NOTE
from domain.snooze import SnoozeFor, snooze_until, time_zone_named
from tests.unit.fakes import NOW, ORG, REP, Outreaching, actor, outreaching

CHICAGO = ZoneInfo("America/Chicago")
LEASE = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("now", "choice", "ends"),
    [
        # Wednesday 2026-11-25 15:00 UTC is 9:00 in Chicago (UTC-6).
        (datetime(2026, 11, 25, 15, 0, tzinfo=UTC), SnoozeFor.HOUR, (11, 25, 16, 0)),
        (datetime(2026, 11, 25, 15, 0, tzinfo=UTC), SnoozeFor.TOMORROW, (11, 26, 15, 0)),
        (datetime(2026, 11, 25, 15, 0, tzinfo=UTC), SnoozeFor.NEXT_WEEK, (11, 30, 15, 0)),
        # 04:00 UTC on the 26th is still the evening of the 25th in Chicago.
        (datetime(2026, 11, 26, 4, 0, tzinfo=UTC), SnoozeFor.TOMORROW, (11, 26, 15, 0)),
        # From a Sunday, next week starts the next day; from a Monday, a week on.
        (datetime(2026, 11, 29, 18, 0, tzinfo=UTC), SnoozeFor.NEXT_WEEK, (11, 30, 15, 0)),
        (datetime(2026, 11, 30, 18, 0, tzinfo=UTC), SnoozeFor.NEXT_WEEK, (12, 7, 15, 0)),
    ],
)
def test_a_snooze_ends_at_nine_in_the_morning_of_the_rep_s_time_zone(
    now: datetime, choice: SnoozeFor, ends: tuple[int, int, int, int]
) -> None:
    month, day, hour, minute = ends
    assert snooze_until(choice, now=now, tz=CHICAGO) == datetime(
        2026, month, day, hour, minute, tzinfo=UTC
    )


def test_tomorrow_nine_o_clock_follows_daylight_saving_time() -> None:
    # Chicago moves to UTC-5 on Sunday 2027-03-14: 9:00 that morning is 14:00 UTC.
    saturday = datetime(2027, 3, 13, 18, 0, tzinfo=UTC)
    assert snooze_until(SnoozeFor.TOMORROW, now=saturday, tz=CHICAGO) == datetime(
        2027, 3, 14, 14, 0, tzinfo=UTC
    )


def test_an_unknown_time_zone_counts_in_utc() -> None:
    assert time_zone_named(None) is UTC
    assert time_zone_named("Mars/Olympus_Mons") is UTC
    assert time_zone_named("America/Chicago") == CHICAGO


def add_card(out: Outreaching, **overrides: Any) -> Card:
    """A reply card waiting in the rep's DM."""
    values: dict[str, Any] = {
        "id": 42,
        "org_id": ORG,
        "type": CardType.REPLY_TO_EMAIL,
        "state": CardState.IN_REVIEW,
        "priority": Priority.HIGH,
        "title": "Reply: Dana: Re: Turn times",
        "created_at": NOW,
        "updated_at": NOW,
        "inbound_email_id": 501,
        "action_payload": {
            "from_email": "dana@pinnacle.test",
            "reply_text": "Send the fees",
            "sender_user_id": REP,
        },
        "slack_channel_id": "D-OWNER",
        "slack_message_ts": "1.000100",
    }
    values.update(overrides)
    card = Card(**values)
    out.world.cards[card.id] = card
    return card


def test_a_snoozed_card_keeps_who_snoozed_it_and_its_message_says_so() -> None:
    out = outreaching()
    add_card(out)

    snoozed = out.outreach.snoozing.snooze_card(actor(), 42, until=NOW + timedelta(hours=1))

    assert snoozed.snoozed_until == NOW + timedelta(hours=1)
    assert snoozed.action_payload["snoozed_by"] == actor().user_id
    assert snoozed.is_snoozed
    assert out.notifier.updated == [(42, CardState.IN_REVIEW)]


@pytest.mark.parametrize("state", [CardState.DONE, CardState.REJECTED, CardState.APPROVED])
def test_a_decided_card_is_not_snoozed(state: CardState) -> None:
    out = outreaching()
    add_card(out, state=state)

    with pytest.raises(CardRefused, match=f"already {state.value}; only a card waiting"):
        out.outreach.snoozing.snooze_card(actor(), 42, until=NOW + timedelta(hours=1))

    assert out.card(42).snoozed_until is None


def test_a_snooze_must_end_later_and_another_organization_s_card_is_not_found() -> None:
    out = outreaching()
    add_card(out)
    add_card(out, id=43, org_id=ORG + 1)

    with pytest.raises(InvalidInput, match="must end in the future"):
        out.outreach.snoozing.snooze_card(actor(), 42, until=NOW)
    with pytest.raises(NotFound):
        out.outreach.snoozing.snooze_card(actor(), 43, until=NOW + timedelta(hours=1))


def test_unsnooze_brings_the_card_back_in_place_once() -> None:
    out = outreaching()
    add_card(out, snoozed_until=NOW + timedelta(hours=1))

    back = out.outreach.snoozing.unsnooze_card(actor(), 42)

    assert back.snoozed_until is None
    assert out.notifier.posted == []
    assert out.notifier.updated == [(42, CardState.IN_REVIEW)]
    with pytest.raises(CardRefused, match="not snoozed"):
        out.outreach.snoozing.unsnooze_card(actor(), 42)


def test_the_sweep_posts_a_card_again_when_its_snooze_ends() -> None:
    out = outreaching()
    add_card(out, snoozed_until=NOW + timedelta(hours=1))
    snoozing = out.outreach.snoozing

    assert snoozing.bring_back_due() == 0
    out.clock.advance(hours=1)
    assert snoozing.bring_back_due() == 1

    card = out.card(42)
    assert out.notifier.posted == [42]
    assert (card.slack_channel_id, card.slack_message_ts, card.snoozed_until) == (
        "D-OWNER",
        "1.000100",
        None,
    )
    assert snoozing.bring_back_due() == 0
    assert out.notifier.posted == [42]


def test_the_former_message_says_the_card_was_posted_again() -> None:
    out = outreaching()
    add_card(out, snoozed_until=NOW, slack_message_ts="0.999")

    assert out.outreach.snoozing.bring_back_due() == 1

    assert out.notifier.replaced == [("D-OWNER", "0.999", BACK_NOTE)]
    assert out.card(42).slack_message_ts == "1.000100"


def test_a_card_decided_while_snoozed_is_not_posted_again() -> None:
    out = outreaching()
    add_card(out, state=CardState.REJECTED, snoozed_until=NOW)

    assert out.outreach.snoozing.bring_back_due() == 1

    assert out.notifier.posted == []
    assert out.card(42).snoozed_until is None


class Killed(BaseException):
    """The process ends here, as under kill -9 (nothing after runs; nothing is caught)."""


def test_a_sweep_that_died_after_its_claim_leaves_the_card_for_after_the_lease() -> None:
    out = outreaching(work_lease=LEASE)
    add_card(out, snoozed_until=NOW)
    with out.uow() as uow:  # the claim committed, then the process died
        uow.cards.claim_due_snoozed(now=NOW, lease_until=NOW + LEASE, limit=50)
        uow.commit()

    assert out.outreach.snoozing.bring_back_due() == 0  # claimed: another sweep leaves it
    out.clock.advance(seconds=LEASE.total_seconds())
    assert out.outreach.snoozing.bring_back_due() == 1

    assert out.notifier.posted == [42]
    assert out.card(42).snoozed_until is None


def test_a_sweep_that_died_after_posting_posts_the_card_twice_at_worst() -> None:
    out = outreaching(work_lease=LEASE)
    add_card(out, snoozed_until=NOW)
    post = out.notifier.post_card

    def post_then_die(
        view: CardView, *, channel: str | None, owner_slack_id: str | None
    ) -> tuple[str, str]:
        post(view, channel=channel, owner_slack_id=owner_slack_id)
        raise Killed

    out.notifier.post_card = post_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        out.outreach.snoozing.bring_back_due()
    out.notifier.post_card = post  # type: ignore[method-assign]

    assert out.card(42).snoozed_until == NOW + LEASE  # still claimed: not lost
    out.clock.advance(seconds=LEASE.total_seconds())
    assert out.outreach.snoozing.bring_back_due() == 1

    assert out.notifier.posted == [42, 42]  # one duplicate message, the card not lost
    card = out.card(42)
    assert (card.snoozed_until, card.slack_message_ts) == (None, "2.000100")


def test_slack_busy_leaves_the_card_for_later_and_slack_refusing_ends_the_snooze() -> None:
    out = outreaching(work_lease=LEASE)
    # No message and no job whose owner could be DMed: nowhere to post; the snooze ends.
    add_card(out, snoozed_until=NOW, slack_channel_id=None, slack_message_ts=None)
    add_card(out, id=43, snoozed_until=NOW)
    post = out.notifier.post_card
    answer = ExternalServiceError("Slack answered ratelimited", retryable=True)

    def refusing(
        view: CardView, *, channel: str | None, owner_slack_id: str | None
    ) -> tuple[str, str]:
        if view.card.id == 43:
            raise answer
        return post(view, channel=channel, owner_slack_id=owner_slack_id)

    out.notifier.post_card = refusing  # type: ignore[method-assign]

    assert out.outreach.snoozing.bring_back_due() == 2

    assert out.card(42).snoozed_until is None
    assert out.card(43).snoozed_until == NOW + LEASE  # tried again once the lease is over
    answer = ExternalServiceError("Slack: the review channel is archived", retryable=False)
    out.clock.advance(seconds=LEASE.total_seconds())
    assert out.outreach.snoozing.bring_back_due() == 1

    refused = out.card(43)
    assert refused.snoozed_until is None
    assert refused.action_payload["slack_error"] == "Slack: the review channel is archived"
    assert out.notifier.posted == []
